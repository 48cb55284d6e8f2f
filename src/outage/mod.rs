//! Outage handling shared by every backend: [`OutageGuard`] wraps any [`Backend`] and keeps
//! it from stalling requests while it is known to be down.
//!
//! - A call that fails with [`BackendError::Unavailable`] (no answer in time, cannot connect,
//!   the backend's actors stopped) marks the backend **down**.
//! - While down, nothing reaches the backend: reserves are answered at once by the
//!   [`BackendDownPolicy`] (`deny`: `backend_error`; `allow`: allowed without accounting),
//!   completes are dropped (their reservations expire by themselves), admin calls fail with
//!   [`BackendError::Down`]. Repeated events are logged at most once a second with a count
//!   and counted in [`OutageStats`].
//! - One probe loop at a time calls [`Backend::probe`] every `probe_interval_ms`, each probe
//!   bounded by `probe_timeout_ms`; the first answer ends the outage.
//!
//! The state machine itself is in [`state`], free of I/O and real time.

pub mod state;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use log::{debug, error, info, warn};
use serde::{Deserialize, Serialize};

pub use state::{Down, Event, Health, OutageCounters, OutageStats, Permit, Throttle, UpEpoch};

use crate::backend::{Backend, BackendError, ReserveOutcome, Started};
use crate::model::rfc3339_utc;
use crate::model::{CompleteCommand, LimitState, ReserveCommand, SharedClock, Usage};

/// What a reserve gets while the backend is known to be down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum BackendDownPolicy {
    /// Fail closed: `backend_error` at once; no call goes ahead unaccounted.
    #[default]
    Deny,
    /// Fail open: allowed at once without accounting; limits are not enforced meanwhile.
    Allow,
}

impl BackendDownPolicy {
    /// The name used in config files, flags and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendDownPolicy::Deny => "deny",
            BackendDownPolicy::Allow => "allow",
        }
    }
}

/// Tunables of the outage handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageSettings {
    /// What a reserve gets while the backend is down.
    pub policy: BackendDownPolicy,
    /// Time between probes while down.
    pub probe_interval_ms: u64,
    /// Bound on one probe.
    pub probe_timeout_ms: u64,
}

/// Default time between probes.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 250;
/// Default bound on one probe.
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 500;

impl Default for OutageSettings {
    fn default() -> Self {
        OutageSettings {
            policy: BackendDownPolicy::Deny,
            probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            probe_timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
        }
    }
}

/// Throttled logs of the repeated events of an outage.
#[derive(Debug, Default)]
struct Logs {
    refused: Throttle,
    allowed: Throttle,
    dropped: Throttle,
}

struct Shared {
    inner: Arc<dyn Backend>,
    settings: OutageSettings,
    clock: SharedClock,
    health: Mutex<Health>,
    /// `health`'s answer while up, read without its lock.
    up: UpEpoch,
    counters: OutageCounters,
    logs: Mutex<Logs>,
    /// The counters when the current outage began, for its summary.
    at_down: Mutex<OutageStats>,
}

/// A [`Backend`] wrapper that answers at once while its backend is known to be down.
pub struct OutageGuard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OutageGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutageGuard")
            .field("backend", &self.shared.inner.name())
            .field("settings", &self.shared.settings)
            .field("down", &self.down())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl OutageGuard {
    /// Guards `inner`; `clock` dates the outages.
    pub fn new(inner: Arc<dyn Backend>, settings: OutageSettings, clock: SharedClock) -> Self {
        OutageGuard {
            shared: Arc::new(Shared {
                inner,
                settings,
                clock,
                health: Mutex::new(Health::default()),
                up: UpEpoch::default(),
                counters: OutageCounters::default(),
                logs: Mutex::new(Logs::default()),
                at_down: Mutex::new(OutageStats::default()),
            }),
        }
    }

    /// The outage in progress, if any.
    pub fn down(&self) -> Option<Down> {
        lock(&self.shared.health).down().cloned()
    }

    /// The counters since start.
    pub fn stats(&self) -> OutageStats {
        self.shared.counters.snapshot()
    }

    /// The tunables in force.
    pub fn settings(&self) -> OutageSettings {
        self.shared.settings
    }

    /// For `/readyz`: the outage in progress if any, otherwise one probe of the backend
    /// bounded by `probe_timeout_ms`. Read-only: a failed check does not start an outage
    /// (the next call that fails does). The error names what is not ready.
    pub async fn check_ready(&self) -> Result<(), String> {
        if let Some(down) = self.down() {
            return Err(self.describe(&down));
        }
        let shared = &self.shared;
        let bound = Duration::from_millis(shared.settings.probe_timeout_ms);
        match tokio::time::timeout(bound, shared.inner.probe()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "backend {} failed its readiness probe: {e}",
                shared.inner.name()
            )),
            Err(_) => Err(format!(
                "backend {} did not answer its readiness probe within {} ms",
                shared.inner.name(),
                shared.settings.probe_timeout_ms
            )),
        }
    }

    /// One line describing an outage, for answers and `/readyz`.
    pub fn describe(&self, down: &Down) -> String {
        let ago_ms = self.shared.clock.now_ms().saturating_sub(down.since_ms);
        format!(
            "backend {} is down since {} ({:.1} s): {}; a probe checks it every {} ms",
            self.shared.inner.name(),
            rfc3339_utc(down.since_ms),
            ago_ms as f64 / 1000.0,
            down.reason,
            self.shared.settings.probe_interval_ms
        )
    }

    /// A permit to call the backend, or the outage in progress (making sure a probe
    /// loop runs: one whose task was dropped is replaced here).
    fn admit(&self) -> Result<Permit, Down> {
        if let Some(permit) = self.shared.up.permit() {
            return Ok(permit);
        }
        let mut health = lock(&self.shared.health);
        match health.admit() {
            Ok(permit) => Ok(permit),
            Err(down) => {
                let start = health.start_probing();
                drop(health);
                if start {
                    spawn_probe_loop(&self.shared);
                }
                Err(down)
            }
        }
    }

    /// Runs `call` unless the backend is down; a failure to reach it marks it down.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        match self.admit() {
            Ok(permit) => self.run(permit, call).await,
            Err(down) => {
                self.shared.counters.count(Event::AdminRefused);
                Err(self.down_error(&down))
            }
        }
    }

    /// Runs a call that was let through; a failure to reach the backend marks it down.
    async fn run<T>(
        &self,
        permit: Permit,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        self.observe(permit, call.await)
    }

    /// Watches the answer of a call that was let through: one that could not reach the
    /// backend marks it down.
    fn observe<T>(
        &self,
        permit: Permit,
        result: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if let Err(BackendError::Unavailable(reason)) = &result {
            self.mark_down(permit, &reason.to_string());
        }
        result
    }

    /// Watches a started call, answered or to finish.
    fn watch<'a, T: Send + 'a>(
        &'a self,
        permit: Permit,
        started: Started<'a, T>,
    ) -> Started<'a, T> {
        match started {
            Started::Done(result) => Started::Done(self.observe(permit, result)),
            Started::Later(rest) => Started::Later(Box::pin(self.run(permit, rest))),
        }
    }

    fn mark_down(&self, permit: Permit, reason: &str) {
        let shared = &self.shared;
        let now_ms = shared.clock.now_ms();
        let mut health = lock(&shared.health);
        if !health.unavailable(permit, now_ms, reason) {
            return;
        }
        shared.up.publish(&health);
        let start = health.start_probing();
        drop(health);
        shared.counters.count(Event::Outage);
        *lock(&shared.at_down) = shared.counters.snapshot();
        error!(
            "backend {} is down: {reason}; until a probe (every {} ms) gets an answer, reserves \
             are {} at once and completes are dropped",
            shared.inner.name(),
            shared.settings.probe_interval_ms,
            match shared.settings.policy {
                BackendDownPolicy::Deny => "answered backend_error",
                BackendDownPolicy::Allow => "allowed WITHOUT accounting (backend_down: allow)",
            }
        );
        if start {
            spawn_probe_loop(shared);
        }
    }

    fn down_error(&self, down: &Down) -> BackendError {
        BackendError::Down(self.describe(down))
    }

    /// Counts an event of the outage and logs it at most once a second.
    fn note(&self, event: Event) {
        let shared = &self.shared;
        shared.counters.count(event);
        let now_ms = shared.clock.now_ms();
        let name = shared.inner.name();
        let mut logs = lock(&shared.logs);
        match event {
            Event::ReserveRefused => {
                if let Some(n) = logs.refused.record(now_ms) {
                    warn!("backend {name} is down: {n} reserve(s) answered backend_error at once");
                }
            }
            Event::ReserveAllowed => {
                if let Some(n) = logs.allowed.record(now_ms) {
                    warn!(
                        "backend {name} is down: {n} reserve(s) allowed WITHOUT accounting \
                         (backend_down: allow; limits are not enforced during the outage)"
                    );
                }
            }
            Event::CompleteDropped => {
                if let Some(n) = logs.dropped.record(now_ms) {
                    warn!(
                        "backend {name} is down: {n} complete(s) dropped; their reservations \
                         expire by themselves"
                    );
                }
            }
            _ => {}
        }
    }
}

/// Ends the probe loop's ownership when its task ends, however it ends (a task dropped
/// with its runtime included), unless the loop already ended it itself.
struct LoopTicket {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for LoopTicket {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.shared.health).probe_loop_ended();
        }
    }
}

fn spawn_probe_loop(shared: &Arc<Shared>) {
    let ticket = LoopTicket {
        shared: Arc::clone(shared),
        armed: true,
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(probe_loop(ticket));
        }
        Err(_) => {
            warn!("no async runtime to probe the backend from; the next call retries");
            drop(ticket);
        }
    }
}

/// Probes every interval until the backend answers, then ends the outage.
async fn probe_loop(mut ticket: LoopTicket) {
    let shared = Arc::clone(&ticket.shared);
    let settings = shared.settings;
    let interval = Duration::from_millis(settings.probe_interval_ms);
    let bound = Duration::from_millis(settings.probe_timeout_ms);
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(bound, shared.inner.probe()).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                shared.counters.count(Event::ProbeFailed);
                debug!("probe of backend {}: {e}", shared.inner.name());
            }
            Err(_) => {
                shared.counters.count(Event::ProbeFailed);
                debug!(
                    "probe of backend {}: no answer within {} ms",
                    shared.inner.name(),
                    settings.probe_timeout_ms
                );
            }
        }
    }
    let ended = {
        let mut health = lock(&shared.health);
        let ended = health.recovered();
        shared.up.publish(&health);
        health.probe_loop_ended();
        ticket.armed = false;
        ended
    };
    let Some(ended) = ended else { return };
    let pending = {
        let mut logs = lock(&shared.logs);
        logs.refused.take_pending() + logs.allowed.take_pending() + logs.dropped.take_pending()
    };
    let before = *lock(&shared.at_down);
    let now = shared.counters.snapshot();
    info!(
        "backend {} answers again after {} ms down; during the outage {} reserve(s) were \
         answered backend_error, {} allowed without accounting, {} complete(s) dropped \
         ({pending} of these not logged yet)",
        shared.inner.name(),
        shared.clock.now_ms().saturating_sub(ended.since_ms),
        now.reserves_refused - before.reserves_refused,
        now.reserves_allowed_unaccounted - before.reserves_allowed_unaccounted,
        now.completes_dropped - before.completes_dropped,
    );
}

#[async_trait]
impl Backend for OutageGuard {
    fn name(&self) -> &'static str {
        self.shared.inner.name()
    }

    async fn define(&self, state: &LimitState) -> Result<(), BackendError> {
        self.guarded(self.shared.inner.define(state)).await
    }

    async fn reserve(&self, command: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        self.start_reserve(command).finish().await
    }

    async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError> {
        self.start_complete(command).finish().await
    }

    fn start_reserve(&self, command: ReserveCommand) -> Started<'_, ReserveOutcome> {
        let permit = match self.admit() {
            Ok(permit) => permit,
            Err(down) => {
                return Started::Done(match self.shared.settings.policy {
                    BackendDownPolicy::Deny => {
                        self.note(Event::ReserveRefused);
                        Err(self.down_error(&down))
                    }
                    BackendDownPolicy::Allow => {
                        self.note(Event::ReserveAllowed);
                        Ok(ReserveOutcome::Allowed {
                            reserved_at_ms: self.shared.clock.now_ms(),
                        })
                    }
                })
            }
        };
        self.watch(permit, self.shared.inner.start_reserve(command))
    }

    fn start_complete(&self, command: CompleteCommand) -> Started<'_, ()> {
        let permit = match self.admit() {
            Ok(permit) => permit,
            Err(down) => {
                self.note(Event::CompleteDropped);
                return Started::Done(match self.shared.settings.policy {
                    BackendDownPolicy::Deny => Err(self.down_error(&down)),
                    BackendDownPolicy::Allow => Ok(()),
                });
            }
        };
        self.watch(permit, self.shared.inner.start_complete(command))
    }

    async fn usage(&self, key: &str) -> Result<Usage, BackendError> {
        self.guarded(self.shared.inner.usage(key)).await
    }

    async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError> {
        self.guarded(self.shared.inner.try_decrease(key, to)).await
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.guarded(self.shared.inner.probe()).await
    }

    #[cfg(feature = "server")]
    fn metrics(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.shared.inner.metrics()
    }

    fn shared_definitions(&self) -> Option<Arc<dyn crate::definitions::DefinitionStore>> {
        self.shared.inner.shared_definitions()
    }

    async fn held_capacities(&self, keys: &[String]) -> Result<Option<Vec<u64>>, BackendError> {
        self.guarded(self.shared.inner.held_capacities(keys)).await
    }
}

#[cfg(test)]
mod tests;
