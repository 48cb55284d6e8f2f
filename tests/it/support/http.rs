//! Shared helpers of the HTTP tests: a real `ratelimiterd` API listening on 127.0.0.1:0 over
//! the memory backend with a manual clock, a reqwest client, and a time bound for every test.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::http::{self, HttpSettings};
use ratelimiter::model::{LimitDefinition, ManualClock, Overage, RetryPolicy};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings, StartError};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::limits;

/// Upper bound of any single HTTP test, in seconds.
pub const HTTP_BOUND_SECS: u64 = 15;

/// A fresh ULID string.
pub fn lease() -> String {
    ulid::Ulid::new().to_string()
}

/// A rolling definition with a unit and a description, as an operator writes one.
pub fn rolling(key: &str, capacity: u64, window_seconds: u64) -> LimitDefinition {
    LimitDefinition {
        unit: "tokens".into(),
        description: format!("test limit {key}"),
        ..limits::rolling(key, capacity, window_seconds)
    }
}

/// A concurrency definition (denying overage) with a unit and a description.
pub fn concurrency(key: &str, capacity: u64, timeout_seconds: u64) -> LimitDefinition {
    LimitDefinition {
        unit: "requests".into(),
        description: format!("test limit {key}"),
        overage: Overage::Deny,
        ..limits::concurrency(key, capacity, timeout_seconds)
    }
}

/// A reserve body with a fresh lease id.
pub fn reserve_body(requirements: &[(&str, u64)]) -> Value {
    reserve_body_for(&lease(), requirements)
}

/// A reserve body for `lease_id`.
pub fn reserve_body_for(lease_id: &str, requirements: &[(&str, u64)]) -> Value {
    let requirements: Vec<Value> = requirements
        .iter()
        .map(|(key, amount)| json!({"key": key, "amount": amount}))
        .collect();
    json!({"lease_id": lease_id, "requirements": requirements})
}

/// A complete body.
pub fn complete_body(lease_id: &str, actuals: &[(&str, u64)]) -> Value {
    let actuals: Vec<Value> = actuals
        .iter()
        .map(|(key, amount)| json!({"key": key, "actual_amount": amount}))
        .collect();
    json!({"lease_id": lease_id, "actuals": actuals})
}

/// A running API over the memory backend.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The service behind the API (to drive decreases directly).
    pub service: Arc<LimiterService>,
    /// The backend's clock.
    pub clock: Arc<ManualClock>,
    /// A client for the API.
    pub client: reqwest::Client,
    handle: ServerHandle,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // The stop command is sent at once; awaiting completion is not needed here.
        drop(self.handle.stop(false));
    }
}

impl TestServer {
    /// An API with an in-memory registry and default settings.
    pub async fn start() -> TestServer {
        Self::start_with(
            RegistrySource::InMemory,
            Vec::new(),
            ServiceSettings::default(),
            test_http(),
        )
        .await
        .expect("test server starts")
    }

    /// An API with the given registry, seed and settings.
    pub async fn start_with(
        registry: RegistrySource,
        seed: Vec<ratelimiter::model::LimitState>,
        settings: ServiceSettings,
        http_settings: HttpSettings,
    ) -> Result<TestServer, StartError> {
        let clock = ManualClock::new(1_700_000_000_000);
        let backend = MemoryBackend::start(clock.clone(), RetryPolicy::default());
        let service = LimiterService::start(backend, registry, seed, settings).await?;
        let bound = http::bind(Arc::clone(&service), http_settings, "127.0.0.1:0")
            .expect("binds 127.0.0.1:0");
        let handle = bound.server.handle();
        actix_rt::spawn(bound.server);
        Ok(TestServer {
            base: format!("http://{}", bound.addr),
            service,
            clock,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client builds"),
            handle,
        })
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn read(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = response.text().await.expect("body readable");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
        (status, value)
    }

    /// POSTs JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        Self::read(response).await
    }

    /// POSTs raw bytes with a content type to `path`.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        Self::read(response).await
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        Self::read(response).await
    }

    /// PUTs a definition (as arbitrary JSON) to the admin API.
    pub async fn put_json(&self, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.url("/v1/admin/limits"))
            .json(body)
            .send()
            .await
            .expect("PUT");
        Self::read(response).await
    }

    /// PUTs a definition and expects success; returns the status (`active`/`decreasing`).
    pub async fn define(&self, definition: &LimitDefinition) -> String {
        let (status, body) = self
            .put_json(&serde_json::to_value(definition).expect("serializes"))
            .await;
        assert_eq!(status, StatusCode::OK, "PUT {}: {body}", definition.key);
        assert_eq!(body["ok"], true);
        body["status"].as_str().expect("status string").to_string()
    }

    /// Reserves and returns the answer (expects 200).
    pub async fn reserve(&self, body: &Value) -> Value {
        let (status, answer) = self.post("/v1/reserve", body).await;
        assert_eq!(status, StatusCode::OK, "reserve: {answer}");
        answer
    }

    /// Completes and returns the answer (expects 200).
    pub async fn complete(&self, lease_id: &str, actuals: &[(&str, u64)]) -> Value {
        let (status, answer) = self
            .post("/v1/complete", &complete_body(lease_id, actuals))
            .await;
        assert_eq!(status, StatusCode::OK, "complete: {answer}");
        answer
    }

    /// The `limit` object of `GET /v1/admin/limits/{key}` (key percent-encoded).
    pub async fn limit(&self, key: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/admin/limits/{}", encode(key))).await;
        assert_eq!(status, StatusCode::OK, "GET {key}: {body}");
        body["limit"].clone()
    }

    /// The live usage of `key`.
    pub async fn usage(&self, key: &str) -> Value {
        self.limit(key).await["usage"].clone()
    }
}

/// HTTP settings for tests: one worker, default body limit.
pub fn test_http() -> HttpSettings {
    HttpSettings {
        workers: 1,
        ..HttpSettings::default()
    }
}

/// Percent-encodes every byte that is not alphanumeric (so `:` becomes `%3A`).
pub fn encode(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string()
}
