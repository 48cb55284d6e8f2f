//! Builds the run's limiter once from `rate_limiter` (disabled → no-op, remote → HTTP client
//! with `request_timeout_ms`, embedded → the in-process memory backend seeded from
//! `limits_path` or inline `limits`; wrapped in the batcher when `batch.size > 1`) and gives
//! each task a scheduler with the task's worker count. Every provider request of the task
//! is reserved through that scheduler and completed with the provider's usage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::config::{LimiterMode, LoadedConfig};
use super::gate::{CallGate, SchedulerGate};
use crate::client::{
    BatchConfig, BatchConfigError, BatchingLimiter, HttpLimiter, HttpLimiterError, Limiter,
    LocalLimiter, LocalLimiterError, NoopLimiter, SchedulerConfig, SchedulerHandle,
};
use crate::limits_file::InvalidLimits;
use crate::model::SystemClock;

/// How long the end of a task waits for the scheduler to finish outstanding completes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Why the limiter could not be built: its settings or limits are invalid. Every variant
/// names the config file and the field.
#[derive(Debug, Error)]
pub enum SetupError {
    /// Remote mode without `base_url`.
    #[error("{file}: rate_limiter.base_url: is required when mode is remote")]
    MissingBaseUrl {
        /// The config file.
        file: PathBuf,
    },
    /// `base_url` cannot be used by the HTTP client.
    #[error("{file}: rate_limiter.base_url: {source}")]
    BaseUrl {
        /// The config file.
        file: PathBuf,
        /// The client's reason.
        source: HttpLimiterError,
    },
    /// Embedded mode without exactly one of `limits_path` and `limits`.
    #[error(
        "{file}: rate_limiter.limits_path: embedded mode needs exactly one of limits_path or limits"
    )]
    LimitsSource {
        /// The config file.
        file: PathBuf,
    },
    /// The limits file could not seed the embedded limiter.
    #[error("{file}: rate_limiter.limits_path: {source}")]
    LimitsPath {
        /// The config file.
        file: PathBuf,
        /// What went wrong, naming the limits file.
        source: LocalLimiterError,
    },
    /// The inline limits break a rule of limits files.
    #[error("{file}: rate_limiter.limits: {source}")]
    InvalidLimits {
        /// The config file.
        file: PathBuf,
        /// The entry at fault.
        source: InvalidLimits,
    },
    /// The inline limits could not seed the embedded limiter.
    #[error("{file}: rate_limiter.limits: {source}")]
    InlineLimits {
        /// The config file.
        file: PathBuf,
        /// What went wrong.
        source: LocalLimiterError,
    },
    /// The `batch` section cannot be used.
    #[error("{file}: rate_limiter.{source}")]
    Batch {
        /// The config file.
        file: PathBuf,
        /// The batch rule broken (it names `batch.<field>`).
        source: BatchConfigError,
    },
}

/// The limiter of one run, shared by all its tasks.
pub struct RunLimiter {
    mode: LimiterMode,
    limiter: Arc<dyn Limiter>,
    max_retry_wait_ms: u64,
}

impl RunLimiter {
    /// Builds the limiter described by the config's `rate_limiter` section. Must be called
    /// inside a running actix System.
    pub async fn build(loaded: &LoadedConfig) -> Result<RunLimiter, SetupError> {
        let rl = &loaded.config.rate_limiter;
        let file = || loaded.path.clone();
        let base: Arc<dyn Limiter> = match rl.mode {
            LimiterMode::Disabled => return Ok(RunLimiter::new(rl.mode, Arc::new(NoopLimiter))),
            LimiterMode::Remote => {
                let url = rl
                    .base_url
                    .as_deref()
                    .ok_or_else(|| SetupError::MissingBaseUrl { file: file() })?;
                let timeout = Duration::from_millis(rl.request_timeout_ms.max(1));
                let client =
                    HttpLimiter::new(url, timeout).map_err(|source| SetupError::BaseUrl {
                        file: file(),
                        source,
                    })?;
                Arc::new(client)
            }
            LimiterMode::Embedded => {
                let clock = Arc::new(SystemClock);
                let inline = rl
                    .inline_states()
                    .map_err(|source| SetupError::InvalidLimits {
                        file: file(),
                        source,
                    })?;
                let local = match (&rl.limits_path, inline) {
                    (Some(path), None) => {
                        LocalLimiter::from_limits_file(loaded.resolve(path), clock)
                            .await
                            .map_err(|source| SetupError::LimitsPath {
                                file: file(),
                                source,
                            })?
                    }
                    (None, Some(states)) => LocalLimiter::from_states(states, clock)
                        .await
                        .map_err(|source| SetupError::InlineLimits {
                            file: file(),
                            source,
                        })?,
                    _ => return Err(SetupError::LimitsSource { file: file() }),
                };
                Arc::new(local)
            }
        };
        let limiter: Arc<dyn Limiter> = if rl.batch.size > 1 {
            let config = BatchConfig {
                size: usize::try_from(rl.batch.size).unwrap_or(usize::MAX),
                flush_ms: rl.batch.flush_ms,
            };
            let batcher =
                BatchingLimiter::start(base, config).map_err(|source| SetupError::Batch {
                    file: file(),
                    source,
                })?;
            Arc::new(batcher)
        } else {
            base
        };
        Ok(RunLimiter::new(rl.mode, limiter).with_max_retry_wait_ms(rl.max_retry_wait_ms))
    }

    /// A run limiter over an existing limiter (embedding, tests).
    pub fn new(mode: LimiterMode, limiter: Arc<dyn Limiter>) -> RunLimiter {
        RunLimiter {
            mode,
            limiter,
            max_retry_wait_ms: crate::client::DEFAULT_MAX_RETRY_WAIT_MS,
        }
    }

    /// Sets how long one reservation is retried while the limiter is unreachable.
    pub fn with_max_retry_wait_ms(mut self, max_retry_wait_ms: u64) -> RunLimiter {
        self.max_retry_wait_ms = max_retry_wait_ms.max(1);
        self
    }

    /// The limiter mode.
    pub fn mode(&self) -> LimiterMode {
        self.mode
    }

    /// A scheduler with `workers` workers for one task. Must be called inside a running
    /// actix System.
    pub fn gate_for_task(&self, workers: usize) -> TaskGate {
        let config = SchedulerConfig {
            workers: workers.max(1),
            max_retry_wait_ms: self.max_retry_wait_ms,
            ..SchedulerConfig::default()
        };
        let handle = SchedulerHandle::start(Arc::clone(&self.limiter), config);
        TaskGate {
            gate: Arc::new(SchedulerGate::new(handle.clone())),
            handle,
        }
    }

    /// Releases the limiter at the end of the run.
    pub async fn shutdown(self) {
        drop(self.limiter);
    }
}

/// The gate of one task: its scheduler.
pub struct TaskGate {
    gate: Arc<dyn CallGate>,
    handle: SchedulerHandle,
}

impl TaskGate {
    /// The gate to put in the task's call pipeline.
    pub fn gate(&self) -> Arc<dyn CallGate> {
        Arc::clone(&self.gate)
    }

    /// Stops the task's scheduler once its outstanding completes are sent.
    pub async fn finish(self) {
        let report = self.handle.shutdown(DRAIN_DEADLINE).await;
        if !report.is_clean() {
            log::warn!(
                "{} limiter job(s) cancelled at the end of the task",
                report.cancelled.len()
            );
        }
    }
}
