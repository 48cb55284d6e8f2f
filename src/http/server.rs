//! Routes and the server: [`configure`] mounts the API on any actix-web app, [`bind`] builds
//! a listening `ratelimiterd` server and reports the address it really bound.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web::{self, ServiceConfig};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

use super::error::{json_error_handler, ApiError, ErrorBody};
use super::metrics::{self, ApiMetrics, MetricsError};
use super::{admin, data, openapi};
use crate::service::LimiterService;

/// Default request-body limit: 1 MiB holds a full batch of 256 large reserves.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a graceful stop waits for requests in flight (they take milliseconds).
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Tunables of the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Worker threads serving connections (at least 1).
    pub workers: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            workers: default_workers(),
        }
    }
}

/// One worker per CPU core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Answer of `GET /healthz`.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The backend in use (`memory`, `tigerbeetle`).
    pub backend: String,
}

/// Answer of `GET /readyz` when the service can serve (200).
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Always true on a 200; a 503 carries `{"error":"not_ready","message":...}` instead.
    pub ready: bool,
}

/// Mounts every route of the API, the JSON error handling and the JSON 404 on an app.
/// Returns a closure that can be called once per server worker; every worker shares one
/// set of metrics (`GET /metrics`), which this call creates. Wrap the app in
/// `actix_web::middleware::from_fn(`[`time_request`](super::time_request)`)` to time its requests by route.
pub fn configure(
    service: Arc<LimiterService>,
    http: HttpSettings,
) -> Result<impl Fn(&mut ServiceConfig) + Clone + Send + 'static, MetricsError> {
    let api_metrics = web::Data::new(ApiMetrics::new()?);
    Ok(move |cfg: &mut ServiceConfig| {
        let json = web::JsonConfig::default()
            .limit(http.max_body_bytes)
            .error_handler(json_error_handler);
        cfg.app_data(web::Data::from(Arc::clone(&service)))
            .app_data(json)
            .service(post("/v1/reserve", data::reserve))
            .service(post("/v1/complete", data::complete))
            .service(post("/v1/reserve/batch", data::reserve_batch))
            .service(post("/v1/complete/batch", data::complete_batch))
            .service(
                web::resource("/v1/admin/limits")
                    .route(web::put().to(admin::put_limit))
                    .route(web::get().to(admin::list_limits))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/admin/limits/{key}")
                    .route(web::get().to(admin::get_limit))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(openapi::resource())
            .service(
                web::resource("/")
                    .route(web::get().to(super::page::index))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/healthz")
                    .route(web::get().to(healthz))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/readyz")
                    .route(web::get().to(readyz))
                    .default_service(web::to(method_not_allowed)),
            )
            .app_data(api_metrics.clone())
            .service(
                web::resource("/metrics")
                    .route(web::get().to(metrics::metrics))
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(not_found));
    })
}

fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(method_not_allowed))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "Always, while the process serves HTTP.", body = Health))
)]
pub(super) async fn healthz(service: web::Data<LimiterService>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        backend: service.backend_name().into(),
    })
}

/// 200 while the backend answers a probe within its timeout (the registry is loaded before
/// the server starts); 503 naming what is not ready (e.g. the backend is down since when, and
/// why), so a load balancer can route around this instance.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: the backend answers and the registry is loaded",
    responses(
        (status = 200, description = "Ready to serve.", body = Ready),
        (status = 503, description = "Not ready: `not_ready`, the message naming what is missing (the backend down since when, and why, or failing or timing out its readiness probe).", body = ErrorBody),
    )
)]
pub(super) async fn readyz(service: web::Data<LimiterService>) -> HttpResponse {
    match service.check_ready().await {
        Ok(()) => HttpResponse::Ok().json(Ready { ready: true }),
        Err(message) => HttpResponse::ServiceUnavailable().json(ErrorBody {
            error: "not_ready".into(),
            message,
        }),
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found(&req))
}

/// The 405 of every route asked with a method it does not serve.
pub(super) async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::method_not_allowed(&req))
}

/// A server bound to its listening socket, not yet running.
pub struct BoundServer {
    /// The server; await it (or spawn it) to serve. It stops through its handle
    /// (`server.handle().stop(true)` finishes requests in flight first).
    pub server: Server,
    /// The address really bound (useful when asked for port 0).
    pub addr: SocketAddr,
}

impl std::fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds the API to `listen` (e.g. `127.0.0.1:8080`, or port 0 for a free port). Must be
/// called inside a running actix System (or tokio runtime); the returned server does
/// nothing until it is awaited or spawned. The server installs no signal handlers (a
/// library must not take over the process's signals): stop it through its handle.
pub fn bind(
    service: Arc<LimiterService>,
    http: HttpSettings,
    listen: impl ToSocketAddrs,
) -> std::io::Result<BoundServer> {
    let routes = configure(service, http).map_err(std::io::Error::other)?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(metrics::time_request))
            .configure(routes.clone())
    })
    .workers(http.workers.max(1))
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .bind(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the server bound no address"))?;
    Ok(BoundServer {
        server: server.run(),
        addr,
    })
}
