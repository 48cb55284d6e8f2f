//! The BDD world: one `ratelimiterd` HTTP server per scenario, the backend factory, and the
//! last answer each step observed (with how long it took).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::dev::ServerHandle;
use ratelimiter::actors::{DecreaseApplier, MemoryBackend};
use ratelimiter::backend::Backend;
use ratelimiter::http::{self, HttpSettings};
use ratelimiter::model::DEFAULT_MAX_LEASES;
use ratelimiter::model::{RetryPolicy, SystemClock};
use ratelimiter::service::LimiterService;
use serde_json::Value;

/// Which backend the scenarios run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// The in-process memory backend.
    Memory,
    /// A TigerBeetle server started by the run itself.
    TigerBeetle,
}

impl BackendChoice {
    /// The backends to run: every one built in, or the one `BDD_BACKEND` names.
    pub fn selected() -> Result<Vec<Self>, String> {
        let built_in = if cfg!(feature = "tigerbeetle") {
            vec![BackendChoice::Memory, BackendChoice::TigerBeetle]
        } else {
            vec![BackendChoice::Memory]
        };
        match std::env::var("BDD_BACKEND").unwrap_or_default().as_str() {
            "" => Ok(built_in),
            "memory" => Ok(vec![BackendChoice::Memory]),
            "tigerbeetle" if cfg!(feature = "tigerbeetle") => Ok(vec![BackendChoice::TigerBeetle]),
            "tigerbeetle" => Err(
                "BDD_BACKEND=tigerbeetle needs the TigerBeetle backend: run `cargo test --features tigerbeetle --test bdd`"
                    .into(),
            ),
            other => Err(format!("BDD_BACKEND={other:?}: expected memory or tigerbeetle")),
        }
    }

    /// The backend's name.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Memory => "memory",
            BackendChoice::TigerBeetle => "tigerbeetle",
        }
    }
}

/// The backend the scenarios being run use (set by `main` before each run).
static CURRENT: Mutex<BackendChoice> = Mutex::new(BackendChoice::Memory);

/// Makes the following scenarios run against `choice`.
pub fn select(choice: BackendChoice) {
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = choice;
}

/// The single factory of the suite's backends, remembering at most `lease_capacity`
/// leases in flight.
pub async fn make_backend(lease_capacity: usize) -> Arc<dyn Backend> {
    let choice = *CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match choice {
        BackendChoice::Memory => MemoryBackend::start_with_lease_capacity(
            Arc::new(SystemClock),
            RetryPolicy::default(),
            lease_capacity,
        ),
        BackendChoice::TigerBeetle => tigerbeetle_backend(lease_capacity).await,
    }
}

#[cfg(feature = "tigerbeetle")]
async fn tigerbeetle_backend(lease_capacity: usize) -> Arc<dyn Backend> {
    let server = crate::tigerbeetle::shared();
    ratelimiter::tigerbeetle::TigerBeetleBackend::connect_with_lease_capacity(
        crate::tigerbeetle::config(server),
        Arc::new(SystemClock),
        RetryPolicy::default(),
        lease_capacity,
    )
    .await
    .expect("the TigerBeetle server started for the run is reachable")
}

#[cfg(not(feature = "tigerbeetle"))]
async fn tigerbeetle_backend(_: usize) -> Arc<dyn Backend> {
    unreachable!("BackendChoice::selected never offers tigerbeetle without the feature")
}

/// A running API: its base URL, service and server handle.
struct Started {
    base: String,
    service: Arc<LimiterService>,
    handle: ServerHandle,
}

/// Starts an API on 127.0.0.1 over a new backend.
async fn start_server(lease_capacity: usize) -> Started {
    let backend = make_backend(lease_capacity).await;
    let service = LimiterService::in_memory(backend)
        .await
        .expect("service starts");
    let http_settings = HttpSettings {
        workers: 1,
        ..HttpSettings::default()
    };
    let bound =
        http::bind(Arc::clone(&service), http_settings, "127.0.0.1:0").expect("binds 127.0.0.1:0");
    let handle = bound.server.handle();
    actix_rt::spawn(bound.server);
    Started {
        base: format!("http://{}", bound.addr),
        service,
        handle,
    }
}

/// What the last data-plane step received.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The JSON answer.
    pub body: Value,
    /// How long the HTTP call took.
    pub elapsed: Duration,
}

/// State of one scenario.
#[derive(Debug, cucumber::World)]
#[world(init = Self::new)]
pub struct LimiterWorld {
    /// Makes the scenario's keys unique, so scenarios can share a TigerBeetle cluster.
    scope: String,
    base: String,
    pub service: Arc<LimiterService>,
    client: reqwest::Client,
    handle: ServerHandle,
    /// Named leases: scenario name → ULID.
    pub leases: HashMap<String, String>,
    /// The last reserve, complete or batch answer.
    pub last: Option<Answer>,
    /// The decrease-apply loop, when the scenario starts one.
    pub applier: Option<Addr<DecreaseApplier>>,
}

impl Drop for LimiterWorld {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl LimiterWorld {
    async fn new() -> Self {
        let Started {
            base,
            service,
            handle,
        } = start_server(DEFAULT_MAX_LEASES).await;
        LimiterWorld {
            scope: ulid::Ulid::new().to_string().to_lowercase(),
            base,
            service,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client builds"),
            handle,
            leases: HashMap::new(),
            last: None,
            applier: None,
        }
    }

    /// Replaces the scenario's server (before any limit is defined) by one whose backend
    /// remembers at most `lease_capacity` leases in flight.
    pub async fn restart_with_lease_capacity(&mut self, lease_capacity: usize) {
        let started = start_server(lease_capacity).await;
        drop(self.handle.stop(false));
        self.base = started.base;
        self.service = started.service;
        self.handle = started.handle;
    }

    /// The full key of a scenario-local limit name.
    pub fn key(&self, name: &str) -> String {
        format!("bdd:{}:{name}", self.scope)
    }

    /// Sends a request with a JSON body (or none) and returns status, body and duration.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value, Duration) {
        let started = Instant::now();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path}: answer is not JSON: {e}"));
        (status, body, started.elapsed())
    }

    /// POSTs and records the answer as the last one (expects 200).
    pub async fn post_and_record(&mut self, path: &str, body: &Value) {
        let (status, answer, elapsed) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {answer}");
        self.last = Some(Answer {
            body: answer,
            elapsed,
        });
    }

    /// The last answer.
    pub fn last(&self) -> &Answer {
        self.last.as_ref().expect("a previous step sent a request")
    }

    /// The admin view of a scenario-local limit.
    pub async fn limit(&self, name: &str) -> Value {
        let path = format!("/v1/admin/limits/{}", self.key(name));
        let (status, body, _) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body["limit"].clone()
    }

    /// The lease id named `name`, created on first use.
    pub fn lease(&mut self, name: &str) -> String {
        self.leases
            .entry(name.to_string())
            .or_insert_with(|| ulid::Ulid::new().to_string())
            .clone()
    }

    /// Starts the decrease-apply loop with `interval`.
    pub fn start_applier(&mut self, interval: Duration) {
        use actix::Actor as _;
        self.applier = Some(DecreaseApplier::new(Arc::clone(&self.service), interval).start());
    }
}
