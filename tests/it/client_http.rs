//! The HTTP client against a tiny actix-web server started in the test: answers decoded,
//! timeout, HTTP 400 → Rejected, other statuses and bad bodies → Protocol, connection
//! refused → Transport, and connections reused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ratelimiter::client::{HttpLimiter, Limiter, LimiterError};
use ratelimiter::model::{
    BatchRequest, BatchResponse, CompleteRequest, LeaseId, Requirement, ReserveRequest,
    ReserveResponse,
};

/// Peer ports seen by the server, to check connection reuse.
type Peers = Arc<Mutex<Vec<u16>>>;

async fn ok_reserve(
    request: HttpRequest,
    body: web::Json<ReserveRequest>,
    peers: web::Data<Peers>,
) -> HttpResponse {
    if let Some(peer) = request.peer_addr() {
        peers.lock().unwrap().push(peer.port());
    }
    // Echo the amount as the hint so the test sees its own request came through.
    HttpResponse::Ok().json(ReserveResponse::denied(body.requirements[0].amount))
}

async fn ok_reserve_batch(body: web::Json<BatchRequest<ReserveRequest>>) -> HttpResponse {
    let results: Vec<ReserveResponse> = body
        .requests
        .iter()
        .map(|r| ReserveResponse::denied(r.requirements[0].amount))
        .collect();
    HttpResponse::Ok().json(BatchResponse { results })
}

async fn short_batch() -> HttpResponse {
    HttpResponse::Ok().json(BatchResponse::<ReserveResponse> { results: vec![] })
}

async fn slow() -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(800)).await;
    HttpResponse::Ok().json(ReserveResponse::allowed(1))
}

async fn bad_request() -> HttpResponse {
    HttpResponse::BadRequest().json(
        serde_json::json!({"error": "invalid_request", "message": "lease_id: \"x\" is not a ULID"}),
    )
}

async fn server_error() -> HttpResponse {
    HttpResponse::InternalServerError().body("boom")
}

async fn garbage() -> HttpResponse {
    HttpResponse::Ok().body("not json")
}

/// Starts the server on a free loopback port; returns its base URL and the server handle.
fn start_server(peers: Peers) -> (String, actix_web::dev::ServerHandle) {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(peers.clone()))
            .route("/ok/v1/reserve", web::post().to(ok_reserve))
            .route("/ok/v1/reserve/batch", web::post().to(ok_reserve_batch))
            .route("/short/v1/reserve/batch", web::post().to(short_batch))
            .route("/slow/v1/reserve", web::post().to(slow))
            .route("/bad/v1/reserve", web::post().to(bad_request))
            .route("/err/v1/complete", web::post().to(server_error))
            .route("/garbage/v1/reserve", web::post().to(garbage))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("http://{address}"), handle)
}

fn reserve(amount: u64) -> ReserveRequest {
    ReserveRequest::new(LeaseId::new(), vec![Requirement::new("k", amount)])
}

fn client(base: &str, path: &str, timeout_ms: u64) -> HttpLimiter {
    HttpLimiter::new(&format!("{base}{path}"), Duration::from_millis(timeout_ms)).unwrap()
}

#[actix_rt::test]
async fn answers_are_decoded_and_connections_reused() {
    bounded(10, async {
        let peers = Peers::default();
        let (base, server) = start_server(peers.clone());
        let limiter = client(&base, "/ok", 2_000);
        for amount in 1..=5 {
            let answer = limiter.reserve(reserve(amount)).await.unwrap();
            assert_eq!(answer.retry_after_ms, amount);
        }
        let ports = peers.lock().unwrap().clone();
        assert_eq!(ports.len(), 5);
        assert!(
            ports.iter().all(|p| *p == ports[0]),
            "new connection per call: {ports:?}"
        );

        let batch = limiter
            .batch_reserve((10..15).map(reserve).collect())
            .await
            .unwrap();
        let hints: Vec<u64> = batch.iter().map(|a| a.retry_after_ms).collect();
        assert_eq!(hints, [10, 11, 12, 13, 14]);
        assert!(limiter.batch_reserve(vec![]).await.unwrap().is_empty());
        server.stop(false).await;
    })
    .await;
}

#[actix_rt::test]
async fn a_slow_server_is_a_timeout() {
    bounded(10, async {
        let (base, server) = start_server(Peers::default());
        let limiter = client(&base, "/slow", 100);
        let start = Instant::now();
        let error = limiter.reserve(reserve(1)).await.unwrap_err();
        assert_eq!(error, LimiterError::Timeout(100));
        assert!(error.is_unknown_outcome());
        assert!(
            start.elapsed() < Duration::from_millis(600),
            "{:?}",
            start.elapsed()
        );
        server.stop(false).await;
    })
    .await;
}

#[actix_rt::test]
async fn http_400_is_a_rejection_with_the_server_message() {
    bounded(10, async {
        let (base, server) = start_server(Peers::default());
        let error = client(&base, "/bad", 2_000)
            .reserve(reserve(1))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            LimiterError::Rejected("lease_id: \"x\" is not a ULID".into())
        );
        assert!(!error.is_unknown_outcome());
        server.stop(false).await;
    })
    .await;
}

#[actix_rt::test]
async fn other_statuses_and_unreadable_bodies_are_protocol_errors() {
    bounded(10, async {
        let (base, server) = start_server(Peers::default());
        let complete = CompleteRequest::new(LeaseId::new(), vec![]);
        match client(&base, "/err", 2_000).complete(complete).await {
            Err(LimiterError::Protocol(message)) => {
                assert!(
                    message.contains("500") && message.contains("boom"),
                    "{message}"
                )
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        let garbage = client(&base, "/garbage", 2_000).reserve(reserve(1)).await;
        assert!(
            matches!(garbage, Err(LimiterError::Protocol(_))),
            "{garbage:?}"
        );
        let short = client(&base, "/short", 2_000)
            .batch_reserve(vec![reserve(1), reserve(2)])
            .await;
        match short {
            Err(LimiterError::Protocol(message)) => {
                assert!(message.contains("0 result(s) for 2"), "{message}")
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
        server.stop(false).await;
    })
    .await;
}

#[actix_rt::test]
async fn a_refused_connection_is_a_transport_error() {
    bounded(10, async {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let limiter =
            HttpLimiter::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
        let error = limiter.reserve(reserve(1)).await.unwrap_err();
        assert!(matches!(error, LimiterError::Transport(_)), "{error:?}");
        assert!(error.is_unknown_outcome());
    })
    .await;
}
