//! `llm-sim`: an OpenAI-compatible chat-completions server for tests, demos and benchmarks.
//! It plays scripted agents ([`script`]), simulates latency and token usage, and enforces
//! its own RPM/TPM/concurrency ([`limits`]), answering 429 with `Retry-After` and counting
//! every 429 it sends. [`SimServer::start`] runs it in-process on its own thread.
//!
//! Token accounting: prompt tokens = ⌈bytes of the request's `messages` JSON / 4⌉,
//! completion tokens = ⌈bytes of the reply (text or tool-call JSON) / 4⌉ (at least 1).

mod limits;
mod script;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use limits::SimLimits;
pub use script::{Script, ScriptError};

/// How to run the simulator.
#[derive(Debug)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Latency of every response (rules may override it).
    pub latency: Duration,
    /// The simulated provider's limits.
    pub limits: SimLimits,
    /// The scripted agents.
    pub script: Script,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            limits: SimLimits::default(),
            script: Script::default(),
        }
    }
}

/// Counters exposed at `GET /sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Chat-completions requests received.
    pub requests: u64,
    /// Requests answered 200.
    pub ok: u64,
    /// 429s sent because the simulator's own limits were exceeded.
    pub rate_limited: u64,
    /// Every 429 sent (own limits plus scripted).
    pub status_429: u64,
    /// Scripted failures sent (any status).
    pub scripted_errors: u64,
    /// Most requests in flight at once.
    pub max_in_flight: u64,
    /// Prompt tokens reported.
    pub prompt_tokens: u64,
    /// Completion tokens reported.
    pub completion_tokens: u64,
}

/// Shared state of a running simulator.
pub(crate) struct SimState {
    latency: Duration,
    script: Script,
    window: Mutex<limits::Window>,
    requests: AtomicU64,
    ok: AtomicU64,
    rate_limited: AtomicU64,
    status_429: AtomicU64,
    scripted_errors: AtomicU64,
    max_in_flight: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

impl SimState {
    fn new(config: SimConfig) -> SimState {
        let busy_retry = config.latency.max(Duration::from_millis(10));
        SimState {
            latency: config.latency,
            script: config.script,
            window: Mutex::new(limits::Window::new(config.limits, busy_retry)),
            requests: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            status_429: AtomicU64::new(0),
            scripted_errors: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
        }
    }

    fn stats(&self) -> SimStats {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        SimStats {
            requests: get(&self.requests),
            ok: get(&self.ok),
            rate_limited: get(&self.rate_limited),
            status_429: get(&self.status_429),
            scripted_errors: get(&self.scripted_errors),
            max_in_flight: get(&self.max_in_flight),
            prompt_tokens: get(&self.prompt_tokens),
            completion_tokens: get(&self.completion_tokens),
        }
    }
}

/// A simulator running on its own thread (its own actix System).
pub struct SimServer {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    state: Arc<SimState>,
}

impl SimServer {
    /// Binds `config.listen` and starts serving; returns once the socket is bound.
    pub fn start(config: SimConfig) -> std::io::Result<SimServer> {
        let listen = config.listen;
        let state = Arc::new(SimState::new(config));
        let (addr, handle) = server::spawn(listen, Arc::clone(&state))?;
        Ok(SimServer {
            addr,
            handle,
            state,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The counters so far.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        // The stop command is sent at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}
