//! `GET /metrics` against the real HTTP server (and the real `ratelimiterd` binary): counter
//! values after known reserves, denials, completes, invalid requests and backend errors, the
//! limit gauges (including a pending decrease, and their absence while the backend is down),
//! the route histogram, escaping, per-instance counts, and the TigerBeetle batcher's
//! histograms. Every scrape is parsed strictly.

use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use ratelimiter::backend::{Backend, BackendError, Outage, ReserveOutcome};
use ratelimiter::http;
use ratelimiter::model::{CompleteCommand, LimitState, ReserveCommand, Usage};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};

use crate::support::bound::bounded;
use crate::support::daemon::Daemon;
use crate::support::exposition::{parse, Exposition};
use crate::support::http::{
    complete_body, concurrency, encode, reserve_body, reserve_body_for, rolling, test_http,
    TestServer, HTTP_BOUND_SECS,
};

const RESERVES: &str = "ratelimiter_reserve_total";
const COMPLETES: &str = "ratelimiter_complete_total";
const DURATION_COUNT: &str = "ratelimiter_request_duration_seconds_count";

/// GETs `/metrics` from `base`, checks the content type and parses the text.
async fn scrape(client: &reqwest::Client, base: &str) -> Exposition {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&response.text().await.expect("body readable"))
}

/// Serves `backend` with `limits` on a free loopback port; the base URL and the server's
/// handle.
async fn serve(
    backend: Arc<dyn Backend>,
    limits: Vec<LimitState>,
) -> (String, actix_web::dev::ServerHandle) {
    let service = LimiterService::start(
        backend,
        RegistrySource::InMemory,
        limits,
        ServiceSettings::default(),
    )
    .await
    .expect("service starts");
    let bound = http::bind(service, test_http(), "127.0.0.1:0").unwrap();
    let handle = bound.server.handle();
    actix_rt::spawn(bound.server);
    (format!("http://{}", bound.addr), handle)
}

fn reserves(m: &Exposition, outcome: &str) -> f64 {
    m.get(RESERVES, &[("outcome", outcome)])
}

fn completes(m: &Exposition, outcome: &str) -> f64 {
    m.get(COMPLETES, &[("outcome", outcome)])
}

fn limit(m: &Exposition, gauge: &str, key: &str) -> f64 {
    m.get(&format!("ratelimiter_limit_{gauge}"), &[("key", key)])
}

#[actix_rt::test]
async fn counts_and_gauges_after_known_reserves_denials_and_completes() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&concurrency("gpu", 2, 60)).await;
        let before = scrape(&server.client, &server.base).await;
        for outcome in ["allowed", "denied", "error", "invalid", "decreasing"] {
            assert_eq!(reserves(&before, outcome), 0.0, "{outcome}");
        }
        assert_eq!(limit(&before, "capacity", "gpu"), 2.0);
        assert_eq!(limit(&before, "in_use", "gpu"), 0.0);

        let mut leases = Vec::new();
        for _ in 0..3 {
            let lease = ulid::Ulid::new().to_string();
            let answer = server
                .reserve(&reserve_body_for(&lease, &[("gpu", 1)]))
                .await;
            if answer["allowed"] == true {
                leases.push(lease);
            }
        }
        assert_eq!(leases.len(), 2);
        server.reserve(&reserve_body(&[("nope", 1)])).await;
        server.reserve(&reserve_body(&[("gpu", 3)])).await;
        let m = scrape(&server.client, &server.base).await;
        assert_eq!(reserves(&m, "allowed"), 2.0);
        assert_eq!(reserves(&m, "denied"), 1.0);
        assert_eq!(reserves(&m, "unknown_key"), 1.0);
        assert_eq!(reserves(&m, "exceeds_capacity"), 1.0);
        assert_eq!(reserves(&m, "error"), 0.0);
        assert_eq!(limit(&m, "capacity", "gpu"), 2.0);
        assert_eq!(limit(&m, "in_use", "gpu"), 2.0);
        assert_eq!(limit(&m, "available", "gpu"), 0.0);
        assert_eq!(limit(&m, "debt", "gpu"), 0.0);
        assert_eq!(limit(&m, "decreasing", "gpu"), 0.0);
        assert_eq!(m.types["ratelimiter_limit_in_use"], "gauge");
        assert_eq!(m.types[RESERVES], "counter");

        server.complete(&leases[0], &[("gpu", 1)]).await;
        // An unknown lease is a harmless no-op: answered ok.
        server.complete(&ulid::Ulid::new().to_string(), &[]).await;
        let m = scrape(&server.client, &server.base).await;
        assert_eq!(completes(&m, "ok"), 2.0);
        assert_eq!(completes(&m, "error"), 0.0);
        assert_eq!(limit(&m, "in_use", "gpu"), 1.0);
        assert_eq!(limit(&m, "available", "gpu"), 1.0);
        assert_eq!(m.get("ratelimiter_backend_up", &[]), 1.0);
    })
    .await;
}

#[actix_rt::test]
async fn invalid_requests_and_batch_items_are_counted_one_by_one() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&rolling("tpm", 100, 60)).await;
        let (status, _) = server
            .post_raw("/v1/reserve", "application/json", "{not json")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = server
            .post("/v1/reserve", &json!({"lease_id": "x", "requirements": []}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = server.post_raw("/v1/complete", "text/plain", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = server
            .post("/v1/reserve/batch", &json!({"requests": []}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let lease = ulid::Ulid::new().to_string();
        let batch = json!({"requests": [
            reserve_body_for(&lease, &[("tpm", 60)]),
            reserve_body(&[("tpm", 60)]),
            {"lease": "malformed"},
        ]});
        let (status, body) = server.post("/v1/reserve/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let completes_batch = json!({"requests": [
            complete_body(&lease, &[("tpm", 50)]),
            {"lease_id": "not-a-ulid", "actuals": []},
        ]});
        let (status, body) = server.post("/v1/complete/batch", &completes_batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let m = scrape(&server.client, &server.base).await;
        // 2 bad single bodies, 1 refused batch, 1 malformed batch item.
        assert_eq!(reserves(&m, "invalid"), 4.0);
        assert_eq!(reserves(&m, "allowed"), 1.0);
        assert_eq!(reserves(&m, "denied"), 1.0);
        // 1 bad single body, 1 invalid batch item; 1 applied batch item.
        assert_eq!(completes(&m, "invalid"), 2.0);
        assert_eq!(completes(&m, "ok"), 1.0);
        assert_eq!(limit(&m, "in_use", "tpm"), 50.0);
    })
    .await;
}

#[actix_rt::test]
async fn the_decreasing_gauge_is_one_while_a_decrease_is_pending() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        server.define(&concurrency("slots", 4, 60)).await;
        let lease = ulid::Ulid::new().to_string();
        let answer = server
            .reserve(&reserve_body_for(&lease, &[("slots", 3)]))
            .await;
        assert_eq!(answer["allowed"], true);
        assert_eq!(
            server.define(&concurrency("slots", 2, 60)).await,
            "decreasing"
        );
        let refused = server.reserve(&reserve_body(&[("slots", 1)])).await;
        assert_eq!(refused["error"], "limit_decreasing:slots");

        let m = scrape(&server.client, &server.base).await;
        assert_eq!(limit(&m, "decreasing", "slots"), 1.0);
        assert_eq!(limit(&m, "capacity", "slots"), 4.0);
        assert_eq!(limit(&m, "in_use", "slots"), 3.0);
        assert_eq!(reserves(&m, "decreasing"), 1.0);

        server.complete(&lease, &[("slots", 3)]).await;
        assert_eq!(server.service.apply_pending_decreases().await, 1);
        let m = scrape(&server.client, &server.base).await;
        assert_eq!(limit(&m, "decreasing", "slots"), 0.0);
        assert_eq!(limit(&m, "capacity", "slots"), 2.0);
    })
    .await;
}

#[actix_rt::test]
async fn request_durations_are_labelled_by_route_pattern_never_by_path() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let key = "tenant:secret-customer:tpm";
        server.define(&rolling(key, 100, 60)).await;
        for _ in 0..5 {
            server.reserve(&reserve_body(&[(key, 1)])).await;
        }
        server.limit(key).await;
        let (status, _) = server.get("/no/such/route").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let m = scrape(&server.client, &server.base).await;
        assert_eq!(m.types["ratelimiter_request_duration_seconds"], "histogram");
        assert_eq!(m.get(DURATION_COUNT, &[("route", "/v1/reserve")]), 5.0);
        assert_eq!(
            m.get(DURATION_COUNT, &[("route", "/v1/admin/limits/{key}")]),
            1.0
        );
        assert_eq!(m.get(DURATION_COUNT, &[("route", "unmatched")]), 1.0);
        let inf = m.get(
            "ratelimiter_request_duration_seconds_bucket",
            &[("route", "/v1/reserve"), ("le", "+Inf")],
        );
        assert_eq!(inf, 5.0);
        let mut last = 0.0;
        for bucket in m
            .series("ratelimiter_request_duration_seconds_bucket")
            .into_iter()
            .filter(|s| s.labels["route"] == "/v1/reserve")
        {
            assert!(bucket.value >= last, "buckets must be cumulative");
            last = bucket.value;
        }
        let routes: Vec<&str> = m
            .series(DURATION_COUNT)
            .iter()
            .map(|s| s.labels["route"].as_str())
            .collect();
        assert!(
            routes
                .iter()
                .all(|r| !r.contains("secret") && !r.contains("no/such")),
            "raw paths leaked into route labels: {routes:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn keys_that_need_escaping_are_rendered_validly() {
    bounded(HTTP_BOUND_SECS, async {
        let server = TestServer::start().await;
        let key = r#"tenant "quoted" \back\slash {brace}=,x ünï"#;
        server.define(&rolling(key, 7, 60)).await;
        server.reserve(&reserve_body(&[(key, 2)])).await;
        let (status, _) = server
            .get(&format!("/v1/admin/limits/{}", encode(key)))
            .await;
        assert_eq!(status, StatusCode::OK);
        let m = scrape(&server.client, &server.base).await;
        assert_eq!(limit(&m, "capacity", key), 7.0);
        assert_eq!(limit(&m, "in_use", key), 2.0);
        assert_eq!(limit(&m, "available", key), 5.0);
    })
    .await;
}

#[actix_rt::test]
async fn every_server_instance_counts_its_own_traffic() {
    bounded(HTTP_BOUND_SECS, async {
        let busy = TestServer::start().await;
        let idle = TestServer::start().await;
        busy.define(&rolling("k", 10, 60)).await;
        busy.reserve(&reserve_body(&[("k", 1)])).await;
        let m = scrape(&busy.client, &busy.base).await;
        assert_eq!(reserves(&m, "allowed"), 1.0);
        let m = scrape(&idle.client, &idle.base).await;
        assert_eq!(reserves(&m, "allowed"), 0.0);
        assert!(m.series("ratelimiter_limit_capacity").is_empty());
    })
    .await;
}

/// A backend that holds definitions but never answers a reserve, a usage read or a probe.
struct Unreachable;

#[async_trait::async_trait]
impl Backend for Unreachable {
    fn name(&self) -> &'static str {
        "unreachable"
    }
    async fn define(&self, _: &LimitState) -> Result<(), BackendError> {
        Ok(())
    }
    async fn reserve(&self, _: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        Err(Outage::Abandoned.into())
    }
    async fn complete(&self, _: CompleteCommand) -> Result<(), BackendError> {
        Err(Outage::Abandoned.into())
    }
    async fn usage(&self, _: &str) -> Result<Usage, BackendError> {
        Err(Outage::Abandoned.into())
    }
    async fn try_decrease(&self, _: &str, _: u64) -> Result<bool, BackendError> {
        Err(Outage::Abandoned.into())
    }
    async fn probe(&self) -> Result<(), BackendError> {
        Err(Outage::Abandoned.into())
    }
}

#[actix_rt::test]
async fn backend_errors_are_counted_and_a_scrape_still_answers_while_it_is_down() {
    bounded(HTTP_BOUND_SECS, async {
        let limits = vec![LimitState::active(rolling("k", 5, 60))];
        let (base, handle) = serve(Arc::new(Unreachable), limits).await;
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let answer: serde_json::Value = client
                .post(format!("{base}/v1/reserve"))
                .json(&reserve_body(&[("k", 1)]))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(answer["error"], "backend_error", "{answer}");
        }
        let answer: serde_json::Value = client
            .post(format!("{base}/v1/complete"))
            .json(&complete_body(&ulid::Ulid::new().to_string(), &[]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["error"], "backend_error", "{answer}");
        let m = scrape(&client, &base).await;
        assert_eq!(reserves(&m, "error"), 2.0);
        assert_eq!(reserves(&m, "allowed"), 0.0);
        assert_eq!(completes(&m, "error"), 1.0);
        assert_eq!(m.get("ratelimiter_backend_up", &[]), 0.0);
        // Usage cannot be read while the backend is down: the limit gauges are left out.
        assert!(m.series("ratelimiter_limit_capacity").is_empty());
        handle.stop(false).await;
    })
    .await;
}

#[tokio::test]
async fn the_binary_serves_metrics_for_the_example_limits() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let limits = Path::new(env!("CARGO_MANIFEST_DIR")).join("limits/example.json");
        let registry = dir.path().join("limits.json");
        let daemon = Daemon::start_local(
            dir.path(),
            &[
                "--limits",
                limits.to_str().unwrap(),
                "--registry",
                registry.to_str().unwrap(),
            ],
        );
        let base = daemon.url("");
        let client = reqwest::Client::new();
        let key = "global:llm:openai:gpt-4o:rpm";
        let answer: serde_json::Value = client
            .post(format!("{base}/v1/reserve"))
            .json(&reserve_body(&[(key, 1)]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["allowed"], true, "{answer}");

        let m = scrape(&client, &base).await;
        assert_eq!(reserves(&m, "allowed"), 1.0);
        assert_eq!(limit(&m, "in_use", key), 1.0);
        assert_eq!(m.series("ratelimiter_limit_capacity").len(), 10);
        assert_eq!(m.get(DURATION_COUNT, &[("route", "/v1/reserve")]), 1.0);
    })
    .await;
}

#[cfg(feature = "tigerbeetle")]
mod tigerbeetle {
    use ratelimiter::model::{RetryPolicy, SystemClock};
    use ratelimiter::tigerbeetle::TigerBeetleBackend;

    use super::*;
    use crate::support::limits::unique_key;
    use crate::support::tigerbeetle as tb;

    #[actix_rt::test]
    async fn the_batcher_histograms_count_tigerbeetle_requests() {
        bounded(60, async {
            let key = unique_key("metrics", "rpm");
            let backend = TigerBeetleBackend::connect(
                tb::config(tb::shared()),
                Arc::new(SystemClock),
                RetryPolicy::default(),
            )
            .await
            .expect("TigerBeetle backend connects");
            let limits = vec![LimitState::active(rolling(&key, 2, 60))];
            let (base, handle) = serve(backend, limits).await;
            let client = reqwest::Client::new();
            for _ in 0..3 {
                let response = client
                    .post(format!("{base}/v1/reserve"))
                    .json(&reserve_body(&[(&key, 1)]))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
            let m = scrape(&client, &base).await;
            assert_eq!(reserves(&m, "allowed"), 2.0);
            assert_eq!(reserves(&m, "denied"), 1.0);
            assert_eq!(limit(&m, "in_use", &key), 2.0);
            assert_eq!(m.types["ratelimiter_tigerbeetle_batch_events"], "histogram");
            // Funding at define and three reserves: at least four create_transfers requests.
            let batches = m.get("ratelimiter_tigerbeetle_batch_events_count", &[]);
            assert!(batches >= 4.0, "{batches}");
            assert!(m.get("ratelimiter_tigerbeetle_batch_events_sum", &[]) >= batches);
            let durations = "ratelimiter_tigerbeetle_request_duration_seconds_count";
            assert_eq!(
                m.get(durations, &[("operation", "create_transfers")]),
                batches
            );
            assert!(m.get(durations, &[("operation", "lookup_accounts")]) > 0.0);
            assert!(m.get(durations, &[("operation", "create_accounts")]) > 0.0);
            handle.stop(false).await;
        })
        .await;
    }
}
