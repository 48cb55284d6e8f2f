//! The Cogni BDD world: a temporary repository with questions, an llm-sim provider, an
//! optional in-process `ratelimiterd`, the config under test, and the outcome of the run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::client::model_limits;
use ratelimiter::http::{self, HttpSettings};
use ratelimiter::model::{LimitState, RetryPolicy, SystemClock};
use ratelimiter::runner::results::RunReport;
use ratelimiter::runner::sim::SimServer;
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};

/// Provider and model of the scenarios' agent.
pub const PROVIDER: &str = "sim";
/// Model of the scenarios' agent.
pub const MODEL: &str = "sim-1";

/// A `ratelimiterd` API served in-process on 127.0.0.1 (a free port).
pub struct RunningLimiter {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    handle: ServerHandle,
}

impl Drop for RunningLimiter {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl RunningLimiter {
    /// Starts the memory backend, the service seeded with `states`, and the HTTP API.
    pub async fn start(states: Vec<LimitState>) -> RunningLimiter {
        let backend = MemoryBackend::start(Arc::new(SystemClock), RetryPolicy::default());
        let service = LimiterService::start(
            backend,
            RegistrySource::InMemory,
            states,
            ServiceSettings::default(),
        )
        .await
        .expect("limiter service starts");
        let settings = HttpSettings {
            workers: 1,
            ..HttpSettings::default()
        };
        let bound = http::bind(service, settings, "127.0.0.1:0").expect("binds 127.0.0.1:0");
        let handle = bound.server.handle();
        actix_rt::spawn(bound.server);
        RunningLimiter {
            base_url: format!("http://{}", bound.addr),
            handle,
        }
    }

    /// `usage` of one key from `GET /v1/admin/limits/{key}`.
    pub async fn usage(&self, key: &str) -> serde_json::Value {
        let encoded =
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC);
        let url = format!("{}/v1/admin/limits/{encoded}", self.base_url);
        let body: serde_json::Value = reqwest::get(&url)
            .await
            .expect("admin GET")
            .json()
            .await
            .expect("JSON");
        body["limit"]["usage"].clone()
    }
}

/// The three keys of the agent's calls, with generous rpm/tpm and the given concurrency cap.
pub fn limit_states(concurrency_cap: u64) -> Vec<LimitState> {
    model_limits(PROVIDER, MODEL, 1_000, 10_000_000, concurrency_cap, 60)
}

/// Everything a scenario sets up and observes.
#[derive(cucumber::World, Default)]
pub struct CogniWorld {
    /// The repository (config, questions, limits file).
    pub dir: Option<tempfile::TempDir>,
    /// The provider simulator.
    pub sim: Option<SimServer>,
    /// Questions written to the repository.
    pub questions: usize,
    /// The `rate_limiter` section of the config, as YAML.
    pub rate_limiter: String,
    /// Task concurrency.
    pub workers: usize,
    /// The in-process `ratelimiterd`, for remote mode.
    pub limiterd: Option<RunningLimiter>,
    /// The run's report.
    pub report: Option<RunReport>,
    /// Wall time of the run (config load, limiter build, evaluation, results).
    pub elapsed: Duration,
}

impl std::fmt::Debug for CogniWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CogniWorld")
            .field("questions", &self.questions)
            .field("rate_limiter", &self.rate_limiter)
            .field("workers", &self.workers)
            .field("sim", &self.sim.as_ref().map(|s| s.stats()))
            .field("elapsed", &self.elapsed)
            .finish()
    }
}

impl CogniWorld {
    /// The repository root.
    pub fn root(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("a repository step ran first")
            .path()
    }

    /// The simulator.
    pub fn sim(&self) -> &SimServer {
        self.sim.as_ref().expect("a provider step ran first")
    }

    /// The run's report.
    pub fn report(&self) -> &RunReport {
        self.report.as_ref().expect("cogni ran")
    }
}
