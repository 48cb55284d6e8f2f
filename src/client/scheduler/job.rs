//! The scheduler's messages and its per-job bookkeeping: a [`Job`] from submission to its
//! end, and the [`Active`] record of a job holding a worker slot.

use std::time::Duration;

use actix::Message;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::queues::{QueueKey, Sequenced};
use super::{ErasedExecute, JobRef, SchedulerError, ShutdownReport};
use crate::client::requirements::JobSpec;
use crate::model::{Actual, LeaseId, Requirement};

pub(super) type Done = oneshot::Sender<Result<(), SchedulerError>>;

/// Hands a job to the scheduler; the outcome arrives on `done`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Submit {
    pub(crate) spec: JobSpec,
    pub(crate) execute: ErasedExecute,
    pub(crate) done: Done,
}

/// Starts (or joins) the shutdown; the report arrives on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown {
    pub(crate) deadline: Duration,
    pub(crate) reply: oneshot::Sender<ShutdownReport>,
}

/// One job, from submission to its end.
pub(super) struct Job {
    pub(super) seq: u64,
    pub(super) job_ref: JobRef,
    pub(super) spec: JobSpec,
    pub(super) queue: QueueKey,
    /// The lease id of the current attempt.
    pub(super) lease: LeaseId,
    /// Unknown outcomes seen with the current lease id.
    pub(super) unknown_attempts: u32,
    /// The queue's completion count when the current reserve was sent: a denial computed
    /// before a later completion freed capacity is stale.
    pub(super) completions_at_reserve: u64,
    /// When the first unknown outcome of the current lease id was seen.
    pub(super) first_unknown_at: Option<std::time::Instant>,
    /// Taken when the job starts running.
    pub(super) execute: Option<ErasedExecute>,
    /// Taken when the caller has been answered (done, failed or cancelled).
    pub(super) done: Option<Done>,
}

impl Sequenced for Job {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Job {
    /// Answers the caller once; false if it was already answered.
    pub(super) fn answer(&mut self, outcome: Result<(), SchedulerError>) -> bool {
        match self.done.take() {
            Some(done) => {
                // A caller that went away does not listen; nothing to do for it.
                let _ = done.send(outcome);
                true
            }
            None => false,
        }
    }
}

/// Where a job holding a worker slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Reserving,
    Running,
    Completing,
}

/// A job holding a worker slot.
pub(super) struct Active {
    pub(super) job: Job,
    pub(super) stage: Stage,
    /// What the current reserve asked for (the keys to complete).
    pub(super) requirements: Vec<Requirement>,
    pub(super) abort: Option<AbortHandle>,
}

/// Actuals equal to the reserved amounts: keeps the reservation when usage is unknown.
pub(super) fn over_count(requirements: &[Requirement]) -> Vec<Actual> {
    requirements
        .iter()
        .map(|r| Actual::new(r.key.clone(), r.amount))
        .collect()
}
