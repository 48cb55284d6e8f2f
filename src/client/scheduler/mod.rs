//! The scheduler (SPEC §6): runs LLM calls as fast as the limits allow, and no faster.
//!
//! A [`SchedulerHandle`] hands jobs to the [`actor::SchedulerActor`], which keeps one queue per
//! `(provider, model)` and up to `workers` reserve/execute cycles at once, taking jobs
//! round-robin from the queues that are ready. For each job it:
//! 1. reserves the job's requirements under a fresh lease id;
//! 2. on a denial (capacity or `limit_decreasing`), gives the job a **new** lease id and makes
//!    its queue wait exactly `retry_after_ms` (the limiter's hint already carries jitter, and
//!    a complete on the queue wakes it earlier) — other queues keep flowing, no head-of-line
//!    blocking across queues;
//! 3. on an unknown outcome (timeout, transport error, `backend_error`), retries the **same**
//!    lease id after a capped exponential backoff, at most `max_transport_retries` times and
//!    for at most `max_retry_wait_ms` in all (an outage of the limiter or of its backend
//!    fails the job with a message saying so instead of stalling it);
//! 4. on `exceeds_capacity:<k>`, fails the job at once with
//!    [`SchedulerError::ExceedsCapacity`] (naming the key, the amount and the capacity): no
//!    wait can make it fit;
//! 5. on `unknown_limit_key:<k>`, warns once and leaves `k` out of every later reserve (an
//!    undefined key does not limit anything), then retries at once with a new lease id;
//! 6. when allowed, runs the job's execute step, then calls `complete` exactly once with the
//!    actual tokens the step reported (best effort: a failed complete is logged).
//!
//! [`SchedulerHandle::shutdown`] stops taking jobs, lets queued and running jobs finish until
//! a deadline, then cancels the rest and reports which.

mod actor;
mod decision;
mod job;
mod queues;
mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use futures::future::BoxFuture;
use thiserror::Error;
use tokio::sync::oneshot;

pub use actor::SchedulerActor;

use super::limiter::{Limiter, LimiterError};
use super::requirements::JobSpec;

/// Tunables of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most reserve/execute cycles at once (at least 1; 0 is treated as 1).
    pub workers: usize,
    /// Most retries of one lease id after unknown outcomes before the job fails.
    pub max_transport_retries: u32,
    /// First backoff after an unknown outcome, in ms; doubles on each further one.
    pub backoff_base_ms: u64,
    /// Largest backoff after an unknown outcome, in ms.
    pub backoff_max_ms: u64,
    /// Up to this much random jitter is added to every backoff after an unknown outcome, so
    /// clients do not retry in lockstep. Denials wait exactly the limiter's hint, which
    /// carries the limiter's own jitter.
    pub jitter_ms: u64,
    /// Cap on the total time one lease id is retried after unknown outcomes, counted from
    /// the first one: the last backoff is cut to end at the cap, and a job still without an
    /// answer then fails with [`SchedulerError::RetryWaitExhausted`].
    pub max_retry_wait_ms: u64,
}

/// Default of [`SchedulerConfig::max_retry_wait_ms`].
pub const DEFAULT_MAX_RETRY_WAIT_MS: u64 = 30_000;

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            workers: 4,
            max_transport_retries: 5,
            backoff_base_ms: 100,
            backoff_max_ms: 5_000,
            jitter_ms: 25,
            max_retry_wait_ms: DEFAULT_MAX_RETRY_WAIT_MS,
        }
    }
}

impl SchedulerConfig {
    /// The backoff before retry number `attempt` (1-based) after an unknown outcome, without
    /// jitter: `backoff_base_ms × 2^(attempt-1)`, capped at `backoff_max_ms`.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(63);
        self.backoff_base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.backoff_max_ms)
    }
}

/// What a job's execute step reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput<T> {
    /// The job's result, handed back to the caller of [`SchedulerHandle::run`].
    pub value: T,
    /// Tokens the call really used (from the provider's usage report), sent with `complete`.
    pub actual_tokens: u64,
}

/// Why a job did not run to completion.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchedulerError {
    /// The limiter refused the request as invalid; retrying cannot help.
    #[error("the limiter rejected the request: {0}")]
    Rejected(String),
    /// Every retry of the same lease id ended with an unknown outcome.
    #[error("limiter unreachable after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        /// Reserve calls made with the lease id.
        attempts: u32,
        /// The last error.
        last: LimiterError,
    },
    /// Unknown outcomes went on for `max_retry_wait_ms`: the limiter (or its backend) was
    /// unreachable for that long.
    #[error("limiter unreachable for {waited_ms} ms ({attempts} attempt(s), retry wait cap reached): {last}")]
    RetryWaitExhausted {
        /// Reserve calls made with the lease id.
        attempts: u32,
        /// Time from the first unknown outcome to giving up.
        waited_ms: u64,
        /// The last error.
        last: LimiterError,
    },
    /// The limiter's answer made no sense for this request.
    #[error("unexpected answer from the limiter: {0}")]
    Protocol(String),
    /// The scheduler was shut down before the job was accepted.
    #[error("the scheduler is shut down")]
    ShutDown,
    /// The job was cancelled by the shutdown deadline.
    #[error("the job was cancelled at the shutdown deadline")]
    Cancelled,
    /// The execute step panicked.
    #[error("the job's execute step panicked")]
    JobPanicked,
    /// A requirement asks for more than its key's capacity (`exceeds_capacity:<key>`): it
    /// can never be allowed, so it is never retried.
    #[error("{}", exceeds_message(key, *amount, unit, *capacity))]
    ExceedsCapacity {
        /// The key.
        key: String,
        /// What the job asked of it.
        amount: u64,
        /// The key's unit (`tokens`, `requests`), empty if unknown.
        unit: String,
        /// The key's capacity, if the limiter could tell.
        capacity: Option<u64>,
    },
}

/// "a request of 20000 tokens exceeds global:llm:openai:gpt-4o:tpm (capacity 10000)".
fn exceeds_message(key: &str, amount: u64, unit: &str, capacity: Option<u64>) -> String {
    let unit = if unit.trim().is_empty() {
        "units"
    } else {
        unit.trim()
    };
    match capacity {
        Some(capacity) => {
            format!("a request of {amount} {unit} exceeds {key} (capacity {capacity})")
        }
        None => format!("a request of {amount} {unit} exceeds the capacity of {key}"),
    }
}

impl SchedulerError {
    /// Whether the job failed because the limiter could not be reached (or answered
    /// `backend_error`) on every attempt, so it was never admitted.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SchedulerError::RetriesExhausted { .. } | SchedulerError::RetryWaitExhausted { .. }
        )
    }
}

/// Where a cancelled job was when the deadline came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStage {
    /// Waiting in its queue (possibly for a retry-after to pass).
    Queued,
    /// Its reserve call was in flight.
    Reserving,
    /// Its execute step was running; it was aborted.
    Running,
}

/// One job named in a [`ShutdownReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// The job id sent with its reserves (a ULID), as it appears in the limiter's logs.
    pub job_id: String,
    /// The job's provider.
    pub provider: String,
    /// The job's model.
    pub model: String,
}

/// What [`SchedulerHandle::shutdown`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that ended (successfully or not) after the shutdown began.
    pub drained: Vec<JobRef>,
    /// Jobs cancelled at the deadline, with the stage they were in.
    pub cancelled: Vec<(JobRef, JobStage)>,
}

impl ShutdownReport {
    /// Whether every job ended before the deadline.
    pub fn is_clean(&self) -> bool {
        self.cancelled.is_empty()
    }
}

/// A job's execute step with its result type erased: it returns the actual tokens and hands
/// the value to the waiting caller itself.
pub(crate) type ErasedExecute = Box<dyn FnOnce() -> BoxFuture<'static, u64> + Send>;

/// A cloneable handle to a running [`SchedulerActor`].
#[derive(Clone)]
pub struct SchedulerHandle {
    addr: Addr<SchedulerActor>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle")
            .field("connected", &self.addr.connected())
            .finish()
    }
}

impl SchedulerHandle {
    /// Starts a scheduler over `limiter`. Must be called inside a running actix System.
    pub fn start(limiter: Arc<dyn Limiter>, config: SchedulerConfig) -> SchedulerHandle {
        SchedulerHandle {
            addr: SchedulerActor::new(limiter, config).start(),
        }
    }

    /// Waits (as long as the limits say) for a reservation for one LLM call, runs `execute`,
    /// then completes the lease exactly once with the actual tokens `execute` reports.
    ///
    /// `execute` runs as its own task; dropping the returned future before the job starts
    /// withdraws the job, dropping it later lets the job run to its end unobserved.
    pub async fn run<T: Send + 'static>(
        &self,
        spec: JobSpec,
        execute: impl FnOnce() -> BoxFuture<'static, JobOutput<T>> + Send + 'static,
    ) -> Result<T, SchedulerError> {
        let (value_tx, value_rx) = oneshot::channel::<T>();
        let erased: ErasedExecute = Box::new(move || {
            let job = execute();
            Box::pin(async move {
                let output = job.await;
                // The caller may have gone away; the tokens still have to be reported.
                let _ = value_tx.send(output.value);
                output.actual_tokens
            })
        });
        let (done_tx, done_rx) = oneshot::channel();
        self.addr.do_send(job::Submit {
            spec,
            execute: erased,
            done: done_tx,
        });
        match done_rx.await {
            Ok(Ok(())) => value_rx.await.map_err(|_| SchedulerError::JobPanicked),
            Ok(Err(error)) => Err(error),
            // The actor stopped, or never got the message.
            Err(_) => Err(SchedulerError::ShutDown),
        }
    }

    /// Stops taking jobs; waits up to `deadline` for queued/running jobs, cancels the rest;
    /// reports which. Jobs already completing their lease at the deadline are let finish (one
    /// limiter call). Later calls report the same shutdown.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let (reply, report) = oneshot::channel();
        self.addr.do_send(job::Shutdown { deadline, reply });
        report.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn handles_can_be_shared_across_threads() {
        shareable::<SchedulerHandle>();
        shareable::<SchedulerConfig>();
        shareable::<SchedulerError>();
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = SchedulerConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..SchedulerConfig::default()
        };
        assert_eq!(config.backoff_ms(1), 100);
        assert_eq!(config.backoff_ms(2), 200);
        assert_eq!(config.backoff_ms(4), 800);
        assert_eq!(config.backoff_ms(5), 1_000);
        assert_eq!(config.backoff_ms(u32::MAX), 1_000);
    }
}
