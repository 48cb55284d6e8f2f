//! Shutdown of the scheduler: stop taking jobs, drain until the deadline, then cancel what
//! is left (aborting running jobs and releasing their leases) and report which.

use actix::{AsyncContext, Context, Handler, SpawnHandle};
use tokio::sync::oneshot;

use super::actor::SchedulerActor;
use super::job::{Shutdown, Stage};
use super::{JobRef, JobStage, SchedulerError, ShutdownReport};

/// A shutdown in progress (or done).
pub(super) struct ShutdownState {
    /// What happened so far.
    pub(super) report: ShutdownReport,
    /// Callers of `shutdown` waiting for the report.
    pub(super) waiters: Vec<oneshot::Sender<ShutdownReport>>,
    /// Fires at the deadline; cancelled when everything drained first.
    pub(super) deadline_timer: Option<SpawnHandle>,
    /// Whether the report was sent.
    pub(super) finished: bool,
}

impl SchedulerActor {
    fn on_deadline(&mut self, ctx: &mut Context<Self>) {
        let mut cancelled: Vec<(u64, JobRef, JobStage)> = Vec::new();
        for mut job in self.queues.drain() {
            if job.answer(Err(SchedulerError::Cancelled)) {
                cancelled.push((job.seq, job.job_ref.clone(), JobStage::Queued));
            }
        }
        let mut aborted = Vec::new();
        for (seq, active) in &mut self.active {
            match active.stage {
                Stage::Reserving => {
                    if active.job.answer(Err(SchedulerError::Cancelled)) {
                        cancelled.push((*seq, active.job.job_ref.clone(), JobStage::Reserving));
                    }
                }
                Stage::Running => {
                    if let Some(abort) = &active.abort {
                        abort.abort();
                    }
                    active.job.answer(Err(SchedulerError::Cancelled));
                    cancelled.push((*seq, active.job.job_ref.clone(), JobStage::Running));
                    aborted.push(*seq);
                }
                // Its work is done; the complete call in flight ends it.
                Stage::Completing => {}
            }
        }
        for seq in aborted {
            if let Some(active) = self.active.remove(&seq) {
                self.release(&active.job, &active.requirements, true);
                self.free_slots += 1;
            }
        }
        cancelled.sort_by_key(|(seq, _, _)| *seq);
        if let Some(state) = &mut self.shutdown {
            state.deadline_timer = None;
            state.report.cancelled = cancelled.into_iter().map(|(_, r, s)| (r, s)).collect();
        }
        self.maybe_report(ctx);
    }

    /// Sends the shutdown report once no job is queued and every slot holder was answered.
    pub(super) fn maybe_report(&mut self, ctx: &mut Context<Self>) {
        let idle = self.queues.is_empty() && self.active.values().all(|a| a.job.done.is_none());
        let Some(state) = &mut self.shutdown else {
            return;
        };
        if state.finished || !idle {
            return;
        }
        state.finished = true;
        if let Some(timer) = state.deadline_timer.take() {
            ctx.cancel_future(timer);
        }
        for waiter in state.waiters.drain(..) {
            let _ = waiter.send(state.report.clone());
        }
    }
}

impl Handler<Shutdown> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        if let Some(state) = &mut self.shutdown {
            if state.finished {
                let _ = msg.reply.send(state.report.clone());
            } else {
                state.waiters.push(msg.reply);
            }
            return;
        }
        let timer = ctx.run_later(msg.deadline, |act, ctx| act.on_deadline(ctx));
        self.shutdown = Some(ShutdownState {
            report: ShutdownReport::default(),
            waiters: vec![msg.reply],
            deadline_timer: Some(timer),
            finished: false,
        });
        self.maybe_report(ctx);
    }
}
