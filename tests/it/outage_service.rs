//! The known-down state through the service and the HTTP API, on the memory backend behind
//! a switch that makes it unreachable: `/readyz`, data plane, admin plane and the decrease
//! applier while down, and recovery by the probe alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use async_trait::async_trait;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::backend::{Backend, BackendError, Outage, ReserveOutcome};
use ratelimiter::http::{bind, HttpSettings};
use ratelimiter::model::{
    CompleteCommand, LimitDefinition, LimitState, ReserveCommand, RetryPolicy, SystemClock, Usage,
};
use ratelimiter::outage::{BackendDownPolicy, OutageSettings};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};
use serde_json::{json, Value};

/// The memory backend, unreachable while `down` is set; counts the calls that reach it.
struct Switched {
    inner: Arc<MemoryBackend>,
    down: AtomicBool,
    calls: AtomicU64,
}

impl Switched {
    fn gate(&self) -> Result<(), BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(BackendError::Unavailable(Outage::Stopped {
                worker: "the backend (switched off)",
            }))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Backend for Switched {
    fn name(&self) -> &'static str {
        "switched"
    }
    async fn define(&self, state: &LimitState) -> Result<(), BackendError> {
        self.gate()?;
        self.inner.define(state).await
    }
    async fn reserve(&self, command: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        self.gate()?;
        self.inner.reserve(command).await
    }
    async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError> {
        self.gate()?;
        self.inner.complete(command).await
    }
    async fn usage(&self, key: &str) -> Result<Usage, BackendError> {
        self.gate()?;
        self.inner.usage(key).await
    }
    async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError> {
        self.gate()?;
        self.inner.try_decrease(key, to).await
    }
    async fn probe(&self) -> Result<(), BackendError> {
        self.gate()?;
        self.inner.probe().await
    }
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn reserve(&self, key: &str) -> Value {
        let body = json!({"lease_id": ulid::Ulid::new().to_string(),
                          "requirements": [{"key": key, "amount": 1}]});
        self.call(reqwest::Method::POST, "/v1/reserve", Some(body))
            .await
            .1
    }
}

async fn start(policy: BackendDownPolicy) -> (Arc<Switched>, Arc<LimiterService>, Api) {
    let backend = Arc::new(Switched {
        inner: MemoryBackend::start(Arc::new(SystemClock), RetryPolicy::default()),
        down: AtomicBool::new(false),
        calls: AtomicU64::new(0),
    });
    let settings = ServiceSettings {
        outage: OutageSettings {
            policy,
            probe_interval_ms: 10,
            probe_timeout_ms: 100,
        },
        ..ServiceSettings::default()
    };
    let service = LimiterService::start(
        backend.clone(),
        RegistrySource::InMemory,
        Vec::new(),
        settings,
    )
    .await
    .expect("service starts");
    let http = HttpSettings {
        workers: 1,
        ..HttpSettings::default()
    };
    let bound = bind(service.clone(), http, "127.0.0.1:0").expect("bind");
    let base = format!("http://{}", bound.addr);
    actix_rt::spawn(bound.server);
    let api = Api {
        base,
        client: reqwest::Client::new(),
    };
    (backend, service, api)
}

/// Waits (at most 2 s) for the probe to end the outage.
async fn until_ready(service: &LimiterService) {
    let started = Instant::now();
    while service.readiness().is_err() {
        assert!(started.elapsed() < Duration::from_secs(2), "no recovery");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[actix_rt::test]
async fn while_down_every_plane_answers_at_once_and_a_probe_ends_it() {
    bounded(10, async {
        let (backend, service, api) = start(BackendDownPolicy::Deny).await;
        service
            .define(LimitDefinition::rolling("k", 100, 60))
            .await
            .unwrap();
        assert_eq!(
            api.call(reqwest::Method::GET, "/readyz", None).await,
            (200, json!({"ready": true}))
        );
        assert_eq!(api.reserve("k").await["allowed"], true);

        backend.down.store(true, Ordering::SeqCst);
        assert_eq!(api.reserve("k").await["error"], "backend_error");
        let (status, body) = api.call(reqwest::Method::GET, "/readyz", None).await;
        assert_eq!(status, 503);
        assert_eq!(body["error"], "not_ready");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("backend switched is down since")
                && message.contains("switched off"),
            "{message}"
        );
        let calls = backend.calls.load(Ordering::SeqCst);
        // Data plane: answered at once, nothing reaches the backend.
        for _ in 0..20 {
            assert_eq!(api.reserve("k").await["error"], "backend_error");
        }
        let complete = json!({"lease_id": ulid::Ulid::new().to_string(), "actuals": []});
        let (_, answer) = api
            .call(reqwest::Method::POST, "/v1/complete", Some(complete))
            .await;
        assert_eq!(answer, json!({"ok": false, "error": "backend_error"}));
        // Admin plane: 503 naming the outage, and nothing changes.
        let put = json!({"key": "k", "kind": "rolling", "capacity": 50, "window_seconds": 60});
        let (status, body) = api
            .call(reqwest::Method::PUT, "/v1/admin/limits", Some(put))
            .await;
        assert_eq!(status, 503);
        assert_eq!(body["error"], "backend_error");
        assert!(
            body["message"].as_str().unwrap().contains("is down since"),
            "{body}"
        );
        let (status, _) = api
            .call(reqwest::Method::GET, "/v1/admin/limits/k", None)
            .await;
        assert_eq!(status, 503);
        // The decrease applier pauses.
        assert_eq!(service.apply_pending_decreases().await, 0);
        // Only probes reached the backend (one may be in flight, not counted yet).
        let reached = backend.calls.load(Ordering::SeqCst) - calls;
        assert!(
            reached <= service.outage_stats().probes_failed + 1,
            "{reached} calls"
        );
        let stats = service.outage_stats();
        assert_eq!((stats.outages, stats.reserves_refused), (1, 20));
        assert_eq!(stats.completes_dropped, 1);
        assert_eq!(stats.admin_refused, 2);

        backend.down.store(false, Ordering::SeqCst);
        until_ready(&service).await;
        assert_eq!(api.call(reqwest::Method::GET, "/readyz", None).await.0, 200);
        assert_eq!(api.reserve("k").await["allowed"], true);
        let (status, body) = api
            .call(reqwest::Method::GET, "/v1/admin/limits/k", None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            body["limit"]["definition"]["capacity"], 100,
            "the refused PUT changed nothing"
        );
        assert_eq!(body["limit"]["usage"]["in_use"], 2);
    })
    .await;
}

#[actix_rt::test]
async fn allow_admits_without_accounting_while_down() {
    bounded(10, async {
        let (backend, service, api) = start(BackendDownPolicy::Allow).await;
        service
            .define(LimitDefinition::rolling("k", 1, 60))
            .await
            .unwrap();
        backend.down.store(true, Ordering::SeqCst);
        assert_eq!(
            api.reserve("k").await["error"],
            "backend_error",
            "the call that finds it down"
        );
        // Capacity 1, yet every reserve is allowed: limits are not enforced while down.
        for _ in 0..5 {
            let answer = api.reserve("k").await;
            assert_eq!(answer["allowed"], true, "{answer}");
        }
        assert_eq!(service.outage_stats().reserves_allowed_unaccounted, 5);
        backend.down.store(false, Ordering::SeqCst);
        until_ready(&service).await;
        // Nothing was accounted: the one unit of capacity is still free, then enforced.
        assert_eq!(api.reserve("k").await["allowed"], true);
        assert_eq!(api.reserve("k").await["allowed"], false);
    })
    .await;
}

#[actix_rt::test]
async fn readyz_probes_a_backend_no_call_has_found_down_yet() {
    bounded(10, async {
        let (backend, service, api) = start(BackendDownPolicy::Deny).await;
        backend.down.store(true, Ordering::SeqCst);
        assert!(service.readiness().is_ok(), "no call has failed yet");
        let (status, body) = api.call(reqwest::Method::GET, "/readyz", None).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "not_ready");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("backend switched failed its readiness probe")
                && message.contains("switched off"),
            "{message}"
        );
        backend.down.store(false, Ordering::SeqCst);
        assert_eq!(
            api.call(reqwest::Method::GET, "/readyz", None).await,
            (200, json!({"ready": true}))
        );
    })
    .await;
}
