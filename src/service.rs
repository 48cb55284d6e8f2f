//! The limiter service: the one place that knows both planes.
//!
//! - Control plane: definitions and their status, persisted in the [`Registry`] before they
//!   are reported as changed; admin changes are serialized by one async lock.
//! - Data plane (`data`): reserve/complete are validated, checked against key status
//!   (decreasing first, then unknown, then larger than the capacity in force; SPEC §4, §9),
//!   and handed to the [`Backend`]. The status snapshot is read under a short lock that is
//!   never held across an await.
//! - Outages: the backend is wrapped in an [`OutageGuard`], so while it is known to be down
//!   every call is answered at once (see [`crate::outage`]); the decrease applier pauses.

use foldhash::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use log::info;
use thiserror::Error;

use crate::backend::{Backend, BackendError};
use crate::limits_file::read_limits_file;
use crate::model::throttle::LogThrottle;
use crate::model::{LimitState, LimitStatus, RetryPolicy, SystemClock};
use crate::outage::{OutageGuard, OutageSettings, OutageStats};
use crate::read_mostly::ReadMostly;
use crate::registry::{Registry, RegistryError};

mod admin;
mod data;
mod shared;

pub use admin::{AdminError, LIST_CONCURRENCY};

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The registry or limits file is unreadable or invalid.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The definitions shared through the backend could not be read or written.
    #[error("shared limit definitions: {0}")]
    Shared(#[from] crate::definitions::StoreError),
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
    states: ReadMostly<HashMap<String, LimitState>>,
    admin_lock: tokio::sync::Mutex<()>,
    settings: ServiceSettings,
    /// When the service started; the time base of its log throttles.
    started: Instant,
    /// A full lease table refuses every reserve: logged at most once a minute.
    full_log: Mutex<LogThrottle>,
    /// Definitions shared with other instances through the backend (TigerBeetle); when
    /// set, they are the registry and the registry file is only read at start.
    shared: Option<shared::SharedDefinitions>,
    /// When held capacity was last compared with the definitions.
    last_heal: Mutex<Option<Instant>>,
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
    ///
    /// A backend that shares its definitions ([`Backend::shared_definitions`], TigerBeetle)
    /// is the registry instead: its definitions are loaded, the registry file's and the
    /// seed's keys it lacks are added to it, and the registry file is not written.
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
        let shared = match backend.shared_definitions() {
            Some(store) => {
                let (in_force, shared) = shared::load(store, states).await?;
                states = in_force;
                Some(shared)
            }
            None => None,
        };
        if seeded > 0 && shared.is_none() {
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
            states: ReadMostly::new(map),
            admin_lock: tokio::sync::Mutex::new(()),
            settings,
            started: Instant::now(),
            full_log: Mutex::new(LogThrottle::new(FULL_LOG_INTERVAL_MS)),
            shared,
            last_heal: Mutex::new(None),
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

    /// `Ok` unless the backend is known to be down (no call to it); else what is not ready.
    /// The registry is loaded before the service exists, so only the backend can be missing.
    pub fn readiness(&self) -> Result<(), String> {
        match self.backend.down() {
            Some(down) => Err(self.backend.describe(&down)),
            None => Ok(()),
        }
    }

    /// For `GET /readyz`: like [`LimiterService::readiness`], and the backend must also answer
    /// a probe within its probe timeout (`backend_probe_timeout_ms`).
    pub async fn check_ready(&self) -> Result<(), String> {
        self.backend.check_ready().await
    }

    /// The backend's own Prometheus metrics (see [`Backend::metrics`]).
    #[cfg(feature = "server")]
    pub fn backend_metrics(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.backend.metrics()
    }

    /// What the outage handling counted since start (outages, reserves refused or allowed
    /// without accounting, completes dropped, ...).
    pub fn outage_stats(&self) -> OutageStats {
        self.backend.stats()
    }

    fn read_states(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, LimitState>> {
        self.states.read()
    }

    /// Sets the state of `key` as every reader sees it.
    fn set_state(&self, key: String, state: LimitState) {
        self.states.update(|states| {
            states.insert(key.clone(), state.clone());
        });
    }

    /// Records one occurrence on `throttle`, timed from the service's start: `Some(n)` if a
    /// line is due now (`n` occurrences held back since the last one).
    fn log_due(&self, throttle: &Mutex<LogThrottle>) -> Option<u64> {
        let now_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due(now_ms)
    }
}

/// Saves the registry on a blocking thread (file I/O never runs on an actor thread).
async fn save_blocking(registry: Registry, states: Vec<LimitState>) -> Result<(), RegistryError> {
    match tokio::task::spawn_blocking(move || registry.save(&states)).await {
        Ok(result) => result,
        Err(join) => Err(RegistryError::Write {
            path: "registry".into(),
            source: std::io::Error::other(join.to_string()),
        }),
    }
}
