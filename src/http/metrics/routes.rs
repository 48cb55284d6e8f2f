//! `GET /metrics` and the request timer that feeds `ratelimiter_request_duration_seconds`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use log::warn;

use super::ApiMetrics;
use crate::http::ErrorBody;
use crate::service::LimiterService;

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: every metric in the Prometheus text format; a 500 with
/// `{"error":"metrics_error",...}` if they cannot be rendered.
pub(crate) async fn metrics(
    metrics: web::Data<ApiMetrics>,
    service: web::Data<LimiterService>,
) -> HttpResponse {
    match metrics.render(&service).await {
        Ok(text) => HttpResponse::Ok().content_type(TEXT_FORMAT).body(text),
        Err(e) => {
            warn!("GET /metrics: {e}");
            HttpResponse::InternalServerError().json(ErrorBody {
                error: "metrics_error".into(),
                message: e.to_string(),
            })
        }
    }
}

/// Middleware: times every request of an app whose routes come from
/// [`crate::http::configure`] and observes it under its route pattern (e.g.
/// `/v1/admin/limits/{key}`, never the raw path, so keys cannot multiply the series). The
/// pattern is read from the answered request: the request must not be cloned before routing,
/// which needs it unshared. Handlers and extractors answer their errors as responses, so an
/// `Err` here (never seen) is passed on untimed.
pub async fn time_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<ApiMetrics>>().cloned();
    let result = next.call(req).await;
    if let (Some(metrics), Ok(response)) = (metrics, &result) {
        let route = response.request().match_pattern();
        metrics.observe_request(route.as_deref(), started.elapsed());
    }
    result
}
