//! Builds the run's limiter once from `rate_limiter` and hands each task a gate with the
//! task's worker count.

use std::sync::Arc;

use thiserror::Error;

use super::config::{LimiterMode, LoadedConfig};
use super::gate::{CallGate, DirectGate};

/// Why the limiter could not be built.
#[derive(Debug, Error)]
pub enum SetupError {
    /// The limiter settings or limits are invalid (names the file and field).
    #[error("{0}")]
    Config(String),
    /// The limiter could not start.
    #[error("cannot start the rate limiter: {0}")]
    Start(String),
}

/// The limiter of one run.
pub struct RunLimiter {
    mode: LimiterMode,
}

impl RunLimiter {
    /// Builds the limiter described by the config's `rate_limiter` section.
    pub async fn build(loaded: &LoadedConfig) -> Result<RunLimiter, SetupError> {
        let mode = loaded.config.rate_limiter.mode;
        match mode {
            LimiterMode::Disabled => Ok(RunLimiter { mode }),
            other => Err(SetupError::Start(format!(
                "mode {other} needs the client library"
            ))),
        }
    }

    /// The limiter mode.
    pub fn mode(&self) -> LimiterMode {
        self.mode
    }

    /// A gate for one task running `workers` questions at once.
    pub fn gate_for_task(&self, _workers: usize) -> TaskGate {
        TaskGate {
            gate: Arc::new(DirectGate),
        }
    }

    /// Releases the limiter at the end of the run.
    pub async fn shutdown(self) {}
}

/// The gate of one task.
pub struct TaskGate {
    gate: Arc<dyn CallGate>,
}

impl TaskGate {
    /// The gate to put in the task's call pipeline.
    pub fn gate(&self) -> Arc<dyn CallGate> {
        Arc::clone(&self.gate)
    }

    /// Waits for the task's outstanding limiter work (completes) to finish.
    pub async fn finish(self) {}
}
