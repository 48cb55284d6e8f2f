//! The limiter service: the one place that knows both planes.
//!
//! - Control plane: definitions and their status, persisted in the [`Registry`] before they
//!   are reported as changed; admin changes are serialized by one async lock.
//! - Data plane: reserve/complete are validated, checked against key status (decreasing
//!   first, then unknown, then larger than the capacity in force; SPEC §4, §9), and handed to the [`Backend`]. The status snapshot is
//!   read under a short lock that is never held across an await.
//! - Outages: the backend is wrapped in an [`OutageGuard`], so while it is known to be down
//!   every call is answered at once (see [`crate::outage`]); the decrease applier pauses.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use futures::future::join_all;
use log::{info, warn};
use thiserror::Error;

use crate::backend::{Backend, BackendError, ReserveOutcome};
use crate::limits_file::read_limits_file;
use crate::model::throttle::LogThrottle;
use crate::model::LeaseTableFull;
use crate::model::{
    CompleteRequest, CompleteResponse, ErrorCode, InvalidRequest, LimitDefinition, LimitInfo,
    LimitState, LimitStatus, ReserveRequest, ReserveResponse, RetryPolicy, SystemClock,
};
use crate::outage::{OutageGuard, OutageSettings, OutageStats};
use crate::registry::{Registry, RegistryError};

/// Why an admin change failed; nothing was changed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The definition broke a rule.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The registry could not be saved.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The backend refused or failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The registry or limits file is unreadable or invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A definition could not be applied to the backend.
    #[error("cannot apply limit {key} to the {backend} backend: {source}")]
    Backend {
        /// The key.
        key: String,
        /// The backend's name.
        backend: &'static str,
        /// The failure.
        source: BackendError,
    },
}

/// Tunables of the service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceSettings {
    /// Retry-after policy; only the decreasing hint is used here, backends use the rest.
    pub retry: RetryPolicy,
    /// Most items in one batch request.
    pub max_batch_items: usize,
    /// What happens while the backend is known to be down, and how it is probed.
    pub outage: OutageSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            retry: RetryPolicy::default(),
            max_batch_items: crate::model::DEFAULT_MAX_BATCH_ITEMS,
            outage: OutageSettings::default(),
        }
    }
}

/// Where definitions come from at start.
#[derive(Debug, Clone, Default)]
pub enum RegistrySource {
    /// Persisted in a registry file, rewritten atomically on every change.
    File(Registry),
    /// Kept in memory only (embedded use, tests).
    #[default]
    InMemory,
}

/// The limiter service shared by the HTTP handlers, the local client and the decrease applier.
pub struct LimiterService {
    backend: OutageGuard,
    registry: RegistrySource,
    states: RwLock<HashMap<String, LimitState>>,
    admin_lock: tokio::sync::Mutex<()>,
    settings: ServiceSettings,
    /// When the service started; the time base of `full_log`.
    started: Instant,
    /// A full lease table refuses every reserve: logged at most once a minute.
    full_log: Mutex<LogThrottle>,
}

/// How often a full lease table is logged at most.
const FULL_LOG_INTERVAL_MS: i64 = 60_000;

impl std::fmt::Debug for LimiterService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterService")
            .field("backend", &self.backend.name())
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl LimiterService {
    /// Starts the service: loads the registry, adds every key of `seed` (a limits file's
    /// states, or inline states) that the registry lacks, saves if that changed anything, and
    /// applies every definition to the backend (resuming pending decreases). The backend is
    /// wrapped in an [`OutageGuard`] with `settings.outage`.
    pub async fn start(
        backend: Arc<dyn Backend>,
        registry: RegistrySource,
        seed: Vec<LimitState>,
        settings: ServiceSettings,
    ) -> Result<Arc<Self>, StartError> {
        let backend = OutageGuard::new(backend, settings.outage, Arc::new(SystemClock));
        let mut states = match &registry {
            RegistrySource::File(r) => {
                let loaded = r.load()?;
                info!(
                    "registry {}: {} limit(s) loaded",
                    r.path().display(),
                    loaded.len()
                );
                loaded
            }
            RegistrySource::InMemory => Vec::new(),
        };
        let mut seeded = 0;
        for state in seed {
            if !states
                .iter()
                .any(|s| s.definition.key == state.definition.key)
            {
                states.push(state);
                seeded += 1;
            }
        }
        if seeded > 0 {
            info!("{seeded} limit(s) added from the limits file");
            if let RegistrySource::File(r) = &registry {
                save_blocking(r.clone(), states.clone()).await?;
            }
        }
        for state in &states {
            backend
                .define(state)
                .await
                .map_err(|source| StartError::Backend {
                    key: state.definition.key.clone(),
                    backend: backend.name(),
                    source,
                })?;
            if state.status == LimitStatus::Decreasing {
                info!(
                    "limit {} resumes its decrease {} -> {}",
                    state.definition.key, state.definition.capacity, state.pending_decrease_to
                );
            }
        }
        let map = states
            .into_iter()
            .map(|s| (s.definition.key.clone(), s))
            .collect();
        Ok(Arc::new(LimiterService {
            backend,
            registry,
            states: RwLock::new(map),
            admin_lock: tokio::sync::Mutex::new(()),
            settings,
            started: Instant::now(),
            full_log: Mutex::new(LogThrottle::new(FULL_LOG_INTERVAL_MS)),
        }))
    }

    /// Starts the service with no registry file, no seed and default settings (embedded
    /// use, tests and benchmarks).
    pub async fn in_memory(backend: Arc<dyn Backend>) -> Result<Arc<Self>, StartError> {
        Self::start(
            backend,
            RegistrySource::InMemory,
            Vec::new(),
            ServiceSettings::default(),
        )
        .await
    }

    /// Starts the service seeded from a limits file, with no registry file.
    pub async fn start_from_limits_file(
        backend: Arc<dyn Backend>,
        limits_file: &Path,
        settings: ServiceSettings,
    ) -> Result<Arc<Self>, StartError> {
        let seed = read_limits_file(limits_file).map_err(RegistryError::from)?;
        Self::start(backend, RegistrySource::InMemory, seed, settings).await
    }

    /// The tunables in force.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// `Ok` when the service can answer with its backend; else what is not ready (the
    /// registry is loaded before the service exists, so only the backend can be missing).
    pub fn readiness(&self) -> Result<(), String> {
        match self.backend.down() {
            Some(down) => Err(self.backend.describe(&down)),
            None => Ok(()),
        }
    }

    /// What the outage handling counted since start (outages, reserves refused or allowed
    /// without accounting, completes dropped, ...).
    pub fn outage_stats(&self) -> OutageStats {
        self.backend.stats()
    }

    fn read_states(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, LimitState>> {
        self.states.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks key status in the order of SPEC §4 and §9: any key decreasing first, then any
    /// unknown, then any requirement larger than its key's capacity in force (it can never
    /// fit, so it is refused at once with no hint and nothing taken).
    fn status_denial(&self, request: &crate::model::ReserveCommand) -> Option<ReserveResponse> {
        let states = self.read_states();
        if let Some(r) = request.requirements.iter().find(|r| {
            states
                .get(&r.key)
                .is_some_and(|s| s.status == LimitStatus::Decreasing)
        }) {
            return Some(ReserveResponse::error(
                ErrorCode::LimitDecreasing(r.key.clone()),
                self.settings.retry.decreasing_ms,
            ));
        }
        if let Some(r) = request
            .requirements
            .iter()
            .find(|r| !states.contains_key(&r.key))
        {
            return Some(ReserveResponse::error(
                ErrorCode::UnknownLimitKey(r.key.clone()),
                0,
            ));
        }
        request
            .requirements
            .iter()
            .find(|r| {
                states
                    .get(&r.key)
                    .is_some_and(|s| r.amount > s.definition.capacity)
            })
            .map(|r| ReserveResponse::error(ErrorCode::ExceedsCapacity(r.key.clone()), 0))
    }

    /// Reserves; `Err` only for a request that breaks a rule of the API.
    pub async fn reserve(
        &self,
        request: &ReserveRequest,
    ) -> Result<ReserveResponse, InvalidRequest> {
        let command = request.validate()?;
        if let Some(denial) = self.status_denial(&command) {
            return Ok(denial);
        }
        let lease = command.lease;
        Ok(match self.backend.reserve(command).await {
            Ok(ReserveOutcome::Allowed { reserved_at_ms }) => {
                ReserveResponse::allowed(reserved_at_ms)
            }
            Ok(ReserveOutcome::Denied { retry_after_ms }) => {
                ReserveResponse::denied(retry_after_ms)
            }
            Err(BackendError::LeaseTableFull(full)) => {
                self.log_lease_table_full(&full);
                ReserveResponse::error(ErrorCode::BackendError, 0)
            }
            Err(e) => {
                log_backend_error("reserve", lease, &e);
                ReserveResponse::error(ErrorCode::BackendError, 0)
            }
        })
    }

    /// Logs a refusal by a full lease table, at most once a minute.
    fn log_lease_table_full(&self, full: &LeaseTableFull) {
        let now_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let due = self
            .full_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due(now_ms);
        if let Some(held_back) = due {
            warn!(
                "reserve refused with backend_error, nothing taken: {full} ({held_back} more \
                 refusal(s) since the last warning; this warning repeats at most once a minute)"
            );
        }
    }

    /// Completes; `Err` only for a request that breaks a rule of the API.
    pub async fn complete(
        &self,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, InvalidRequest> {
        let command = request.validate()?;
        let lease = command.lease;
        Ok(match self.backend.complete(command).await {
            Ok(()) => CompleteResponse::ok(),
            Err(e) => {
                log_backend_error("complete", lease, &e);
                CompleteResponse::error(ErrorCode::BackendError)
            }
        })
    }

    /// Reserves every item; an invalid item gets its own `invalid_request` answer. Items are
    /// handed to the backend in array order.
    pub async fn reserve_batch(&self, requests: &[ReserveRequest]) -> Vec<ReserveResponse> {
        join_all(requests.iter().map(|r| async move {
            self.reserve(r)
                .await
                .unwrap_or_else(|_| ReserveResponse::error(ErrorCode::InvalidRequest, 0))
        }))
        .await
    }

    /// Completes every item; an invalid item gets its own `invalid_request` answer.
    pub async fn complete_batch(&self, requests: &[CompleteRequest]) -> Vec<CompleteResponse> {
        join_all(requests.iter().map(|r| async move {
            self.complete(r)
                .await
                .unwrap_or_else(|_| CompleteResponse::error(ErrorCode::InvalidRequest))
        }))
        .await
    }

    /// Creates or updates a limit (SPEC §3 admin PUT, §4 capacity changes) and returns its
    /// status. The registry is saved first, then the backend updated (see `commit`), so a
    /// failed change changes nothing.
    pub async fn define(&self, definition: LimitDefinition) -> Result<LimitStatus, AdminError> {
        definition.validate()?;
        let _admin = self.admin_lock.lock().await;
        let previous = self.read_states().get(&definition.key).cloned();
        let next = match &previous {
            Some(existing) => existing.updated_with(definition)?,
            None => LimitState::active(definition),
        };
        self.commit(previous, next.clone()).await?;
        info!(
            "limit {} defined: {:?} capacity {} ({:?}{})",
            next.definition.key,
            next.definition.kind,
            next.definition.capacity,
            next.status,
            if next.status == LimitStatus::Decreasing {
                format!(" to {}", next.pending_decrease_to)
            } else {
                String::new()
            }
        );
        Ok(next.status)
    }

    /// Saves `next` in the registry, then applies it to the backend. A failed save changes
    /// nothing anywhere: the backend, which other instances may share, never holds a
    /// definition that could not be persisted (a new key leaves no actor or account behind).
    /// If the backend fails, the registry is put back to `previous`. Callers hold the admin
    /// lock.
    async fn commit(
        &self,
        previous: Option<LimitState>,
        next: LimitState,
    ) -> Result<(), AdminError> {
        let key = next.definition.key.clone();
        if let RegistrySource::File(registry) = &self.registry {
            save_blocking(registry.clone(), self.states_with(&key, Some(&next))).await?;
        }
        if let Err(e) = self.backend.define(&next).await {
            if let RegistrySource::File(registry) = &self.registry {
                let restored = self.states_with(&key, previous.as_ref());
                if let Err(undo) = save_blocking(registry.clone(), restored).await {
                    warn!(
                        "limit {key}: the backend refused the change and the registry could \
                         not be put back ({undo}); the next start applies the saved definition"
                    );
                }
            }
            return Err(e.into());
        }
        self.states
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, next);
        Ok(())
    }

    /// Every known state with `key` replaced by `state` (or left out), sorted by key: what
    /// the registry file holds after the change.
    fn states_with(&self, key: &str, state: Option<&LimitState>) -> Vec<LimitState> {
        let mut all: Vec<LimitState> = self
            .read_states()
            .values()
            .filter(|s| s.definition.key != key)
            .cloned()
            .collect();
        all.extend(state.cloned());
        all.sort_by(|a, b| a.definition.key.cmp(&b.definition.key));
        all
    }

    /// The definition in force of a key, or `None` for an unknown key (no backend call).
    pub fn definition(&self, key: &str) -> Option<LimitDefinition> {
        self.read_states().get(key).map(|s| s.definition.clone())
    }

    /// One limit with live usage, or `None` for an unknown key.
    pub async fn get(&self, key: &str) -> Result<Option<LimitInfo>, BackendError> {
        let Some(state) = self.read_states().get(key).cloned() else {
            return Ok(None);
        };
        let usage = self.backend.usage(key).await?;
        Ok(Some(LimitInfo { state, usage }))
    }

    /// Every limit with live usage, sorted by key.
    pub async fn list(&self) -> Result<Vec<LimitInfo>, BackendError> {
        let mut states: Vec<LimitState> = self.read_states().values().cloned().collect();
        states.sort_by(|a, b| a.definition.key.cmp(&b.definition.key));
        let mut infos = Vec::with_capacity(states.len());
        for state in states {
            let usage = self.backend.usage(&state.definition.key).await?;
            infos.push(LimitInfo { state, usage });
        }
        Ok(infos)
    }

    /// Tries every pending decrease once; returns how many were applied. Paused while the
    /// backend is down: the keys stay decreasing until it answers again.
    pub async fn apply_pending_decreases(&self) -> usize {
        if self.backend.down().is_some() {
            return 0;
        }
        let pending: Vec<String> = self
            .read_states()
            .values()
            .filter(|s| s.status == LimitStatus::Decreasing)
            .map(|s| s.definition.key.clone())
            .collect();
        let mut applied = 0;
        for key in pending {
            let _admin = self.admin_lock.lock().await;
            // Re-read under the lock: a PUT may have replaced or cancelled the decrease.
            let Some(state) = self.read_states().get(&key).cloned() else {
                continue;
            };
            if state.status != LimitStatus::Decreasing {
                continue;
            }
            let target = state.pending_decrease_to;
            match self.backend.try_decrease(&key, target).await {
                Ok(true) => {
                    let next = state.decrease_applied();
                    match self.commit(Some(state.clone()), next).await {
                        Ok(()) => {
                            applied += 1;
                            info!("limit {key}: decrease to {target} applied");
                        }
                        Err(e) => warn!("limit {key}: decrease applied but not saved: {e}"),
                    }
                }
                Ok(false) => {}
                Err(e) => warn!("limit {key}: decrease not applied: {e}"),
            }
        }
        applied
    }
}

/// One line per failed call, except while the backend is known to be down: those answers
/// are counted and logged at most once a second by the [`OutageGuard`].
fn log_backend_error(what: &str, lease: crate::model::LeaseId, error: &BackendError) {
    if !matches!(error, BackendError::Down(_)) {
        warn!("{what} {lease}: {error}");
    }
}

#[async_trait::async_trait]
impl crate::actors::PendingDecreases for LimiterService {
    async fn apply_pending_decreases(&self) -> usize {
        LimiterService::apply_pending_decreases(self).await
    }
}

async fn save_blocking(registry: Registry, states: Vec<LimitState>) -> Result<(), RegistryError> {
    match tokio::task::spawn_blocking(move || registry.save(&states)).await {
        Ok(result) => result,
        Err(join) => Err(RegistryError::Write {
            path: "registry".into(),
            source: std::io::Error::other(join.to_string()),
        }),
    }
}
