//! The client library: the [`Limiter`] trait and its implementations (HTTP, local, no-op),
//! the batcher, the scheduler, and the requirements of an LLM call (SPEC §6).
//!
//! Embedding in a few lines (inside an actix System):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ratelimiter::client::{HttpLimiter, JobOutput, JobSpec, SchedulerConfig, SchedulerHandle};
//!
//! let limiter = Arc::new(HttpLimiter::new("http://127.0.0.1:8080", Duration::from_secs(2))?);
//! let scheduler = SchedulerHandle::start(limiter, SchedulerConfig::default());
//! let answer = scheduler
//!     .run(JobSpec::new("openai", "gpt-4o", 1_200, 256), || {
//!         Box::pin(async { JobOutput { value: "42", actual_tokens: 700 } })
//!     })
//!     .await?;
//! # let _ = answer;
//! # Ok(())
//! # }
//! ```

mod batcher;
mod http;
mod limiter;
pub mod loadtest;
mod local;
mod requirements;
mod scheduler;

pub use batcher::{BatchConfig, BatchConfigError, BatchStats, BatchingLimiter};
pub use http::{HttpLimiter, HttpLimiterError};
pub use limiter::{Limiter, LimiterError, NoopLimiter};
pub use local::{LocalLimiter, LocalLimiterError};
pub use requirements::{
    actuals_for, concurrency_key, model_limits, requirements_for, rpm_key, tenant_daily_tokens_key,
    token_upper_bound, tpm_key, JobSpec,
};
pub use scheduler::{
    JobOutput, JobRef, JobStage, SchedulerConfig, SchedulerError, SchedulerHandle, ShutdownReport,
    DEFAULT_MAX_RETRY_WAIT_MS,
};
