//! The scheduler actor: owns the queues, the worker slots and each job's lifecycle
//! (queued → reserving → running → completing → done). It never sleeps: waits are queue
//! delays woken by one timer, limiter calls and execute steps run as futures beside it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::wrap_future;
use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, SpawnHandle, WrapFuture};
use log::{debug, error, warn};
use rand::Rng;
use tokio::task::JoinError;

use super::decision::{decide, Decision};
use super::job::{over_count, Active, Job, Stage, Submit};
use super::queues::Queues;
use super::shutdown::ShutdownState;
use super::{JobRef, SchedulerConfig, SchedulerError};
use crate::client::limiter::{Limiter, LimiterError};
use crate::client::requirements::{actuals_for, requirements_for};
use crate::model::{Actual, CompleteRequest, LeaseId, Requirement, ReserveRequest};

/// The actor behind [`super::SchedulerHandle`].
pub struct SchedulerActor {
    limiter: Arc<dyn Limiter>,
    config: SchedulerConfig,
    pub(super) queues: Queues<Job>,
    /// Jobs holding a worker slot, by submission number.
    pub(super) active: HashMap<u64, Active>,
    pub(super) free_slots: usize,
    /// Keys the limiter does not define; left out of every reserve.
    dropped_keys: HashSet<String>,
    next_seq: u64,
    /// The pending wake-up timer and when it fires.
    wake: Option<(Instant, SpawnHandle)>,
    pub(super) shutdown: Option<ShutdownState>,
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;
}

impl SchedulerActor {
    /// A scheduler over `limiter`; start it with [`super::SchedulerHandle::start`].
    pub(crate) fn new(limiter: Arc<dyn Limiter>, config: SchedulerConfig) -> Self {
        if config.workers == 0 {
            warn!("scheduler workers is 0; using 1");
        }
        SchedulerActor {
            limiter,
            config,
            queues: Queues::new(),
            active: HashMap::new(),
            free_slots: config.workers.max(1),
            dropped_keys: HashSet::new(),
            next_seq: 0,
            wake: None,
            shutdown: None,
        }
    }

    fn jitter_ms(&self) -> u64 {
        match self.config.jitter_ms {
            0 => 0,
            cap => rand::rng().random_range(0..=cap),
        }
    }

    /// Starts reserves for ready jobs while slots are free, then arms the wake-up timer.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while self.free_slots > 0 {
            let Some(job) = self.queues.pop_ready(now) else {
                break;
            };
            if job.done.as_ref().map_or(true, |d| d.is_closed()) {
                debug!(
                    "job {} withdrawn by its caller before it started",
                    job.job_ref.job_id
                );
                continue;
            }
            self.start_reserve(job, ctx);
        }
        self.arm_wake(ctx);
        self.maybe_report(ctx);
    }

    fn arm_wake(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.queues.next_wake() else {
            return;
        };
        if self.wake.as_ref().is_some_and(|(at, _)| *at <= next) {
            return;
        }
        if let Some((_, handle)) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        let delay = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.dispatch(ctx);
        });
        self.wake = Some((next, handle));
    }

    fn start_reserve(&mut self, mut job: Job, ctx: &mut Context<Self>) {
        self.free_slots -= 1;
        let requirements: Vec<Requirement> = requirements_for(&job.spec)
            .into_iter()
            .filter(|r| !self.dropped_keys.contains(r.key.as_ref()))
            .collect();
        if requirements.is_empty() {
            // No key of this job is defined: nothing limits it.
            self.start_running(job, requirements, ctx);
            return;
        }
        job.completions_at_reserve = self.queues.completions(&job.queue);
        let request = ReserveRequest {
            lease_id: job.lease.to_string(),
            job_id: Some(job.job_ref.job_id.clone()),
            requirements: requirements.clone(),
        };
        let seq = job.seq;
        self.active.insert(
            seq,
            Active {
                job,
                stage: Stage::Reserving,
                requirements,
                abort: None,
            },
        );
        let limiter = self.limiter.clone();
        ctx.spawn(
            async move { limiter.reserve(request).await }
                .into_actor(self)
                .map(move |answer, act, ctx| act.on_reserved(seq, answer, ctx)),
        );
    }

    fn on_reserved(
        &mut self,
        seq: u64,
        answer: Result<crate::model::ReserveResponse, LimiterError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(Active {
            mut job,
            requirements,
            ..
        }) = self.active.remove(&seq)
        else {
            return;
        };
        let decision = decide(answer, &requirements);
        if job.done.is_none() {
            // Cancelled at the deadline while reserving: give back whatever may have been taken.
            if matches!(decision, Decision::Run | Decision::Unknown(_)) {
                self.release(&job, &requirements, false);
            }
            self.free_slots += 1;
            self.maybe_report(ctx);
            return;
        }
        match decision {
            Decision::Run => {
                self.start_running(job, requirements, ctx);
                return;
            }
            Decision::Wait { retry_after_ms } => {
                // Exactly the limiter's hint: it is already the time capacity frees (plus
                // the limiter's jitter); adding more here would only leave capacity idle.
                // But a call of the queue completed while this reserve was in flight: the
                // hint predates the capacity that freed, so retry at once.
                let wait_ms = if self.queues.completions(&job.queue) != job.completions_at_reserve {
                    0
                } else {
                    retry_after_ms
                };
                debug!(
                    "job {} denied; its queue waits {wait_ms} ms",
                    job.job_ref.job_id
                );
                self.retry_later(job, true, wait_ms);
            }
            Decision::ExceedsCapacity { key, amount } => {
                self.fail_exceeds_capacity(job, key, amount, ctx);
                return;
            }
            Decision::DropKey(key) => {
                if self.dropped_keys.insert(key.clone()) {
                    warn!("limit key {key} is not defined on the limiter; calls are not limited by it");
                }
                self.retry_later(job, true, 0);
            }
            Decision::Unknown(last) => {
                let since = *job.first_unknown_at.get_or_insert_with(Instant::now);
                let waited_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                let wait_left = self.config.max_retry_wait_ms.saturating_sub(waited_ms);
                let attempts = job.unknown_attempts + 1;
                if job.unknown_attempts >= self.config.max_transport_retries {
                    self.release(&job, &requirements, false);
                    self.finish(
                        job,
                        Err(SchedulerError::RetriesExhausted { attempts, last }),
                    );
                } else if wait_left == 0 {
                    self.release(&job, &requirements, false);
                    self.finish(
                        job,
                        Err(SchedulerError::RetryWaitExhausted {
                            attempts,
                            waited_ms,
                            last,
                        }),
                    );
                } else {
                    job.unknown_attempts += 1;
                    let wait_ms = self
                        .config
                        .backoff_ms(job.unknown_attempts)
                        .saturating_add(self.jitter_ms())
                        .min(wait_left);
                    warn!(
                        "reserve of job {} had an unknown outcome ({last}); retrying lease {} in {wait_ms} ms",
                        job.job_ref.job_id, job.lease
                    );
                    self.retry_later(job, false, wait_ms);
                }
            }
            Decision::Fail(error) => self.finish(job, Err(error)),
        }
        self.dispatch(ctx);
    }

    /// Fails a job whose requirement can never fit, after asking the limiter for the key's
    /// capacity and unit so the error names them. The job keeps its slot until then.
    fn fail_exceeds_capacity(
        &mut self,
        job: Job,
        key: String,
        amount: u64,
        ctx: &mut Context<Self>,
    ) {
        let limiter = self.limiter.clone();
        let lookup_key = key.clone();
        ctx.spawn(
            async move { limiter.definition(&lookup_key).await }
                .into_actor(self)
                .map(move |definition, act, ctx| {
                    let definition = definition.unwrap_or_else(|e| {
                        warn!("cannot read the definition of {key}: {e}");
                        None
                    });
                    let error = SchedulerError::ExceedsCapacity {
                        unit: definition
                            .as_ref()
                            .map(|d| d.unit.clone())
                            .unwrap_or_default(),
                        capacity: definition.map(|d| d.capacity),
                        key,
                        amount,
                    };
                    warn!("job {} fails: {error}", job.job_ref.job_id);
                    act.finish(job, Err(error));
                    act.dispatch(ctx);
                }),
        );
    }

    /// Puts a job back in its queue (with a new lease id after a denial), makes the queue
    /// wait `wait_ms`, and frees the job's slot.
    fn retry_later(&mut self, mut job: Job, new_lease: bool, wait_ms: u64) {
        if new_lease {
            job.lease = LeaseId::new();
            job.unknown_attempts = 0;
            job.first_unknown_at = None;
        }
        if wait_ms > 0 {
            self.queues
                .delay(&job.queue, Instant::now() + Duration::from_millis(wait_ms));
        }
        let queue = job.queue.clone();
        self.queues.requeue(&queue, job);
        self.free_slots += 1;
    }

    fn start_running(
        &mut self,
        mut job: Job,
        requirements: Vec<Requirement>,
        ctx: &mut Context<Self>,
    ) {
        let Some(execute) = job.execute.take() else {
            self.finish(
                job,
                Err(SchedulerError::Protocol("job started twice".into())),
            );
            return;
        };
        // The execute step is the caller's code: it runs as its own task, never in the actor.
        let task = actix_rt::spawn(async move { execute().await });
        let seq = job.seq;
        self.active.insert(
            seq,
            Active {
                job,
                stage: Stage::Running,
                requirements,
                abort: Some(task.abort_handle()),
            },
        );
        ctx.spawn(
            wrap_future::<_, Self>(task)
                .map(move |joined, act, ctx| act.on_executed(seq, joined, ctx)),
        );
    }

    fn on_executed(&mut self, seq: u64, joined: Result<u64, JoinError>, ctx: &mut Context<Self>) {
        let Some(active) = self.active.get_mut(&seq) else {
            // Cancelled at the deadline; its lease was already released.
            return;
        };
        let (actuals, outcome) = match joined {
            Ok(tokens) => {
                let actuals = actuals_for(&active.job.spec, tokens)
                    .into_iter()
                    .filter(|a| active.requirements.iter().any(|r| r.key == a.key))
                    .collect();
                (actuals, Ok(()))
            }
            Err(e) => {
                error!("job {} failed: {e}", active.job.job_ref.job_id);
                (
                    over_count(&active.requirements),
                    Err(SchedulerError::JobPanicked),
                )
            }
        };
        if active.requirements.is_empty() {
            if let Some(active) = self.active.remove(&seq) {
                self.finish(active.job, outcome);
            }
            self.dispatch(ctx);
            return;
        }
        active.stage = Stage::Completing;
        let lease = active.job.lease;
        let request = CompleteRequest {
            lease_id: lease.to_string(),
            job_id: Some(active.job.job_ref.job_id.clone()),
            actuals,
        };
        let limiter = self.limiter.clone();
        ctx.spawn(
            async move { limiter.complete(request).await }
                .into_actor(self)
                .map(move |answer, act, ctx| {
                    log_complete(lease, answer);
                    if let Some(active) = act.active.remove(&seq) {
                        // The complete freed capacity on this queue's keys (its concurrency
                        // slot at least): a waiting job of the queue may fit now.
                        act.queues.wake(&active.job.queue);
                        act.finish(active.job, outcome);
                    }
                    act.dispatch(ctx);
                }),
        );
    }

    /// Answers the caller and frees the job's slot.
    fn finish(&mut self, mut job: Job, outcome: Result<(), SchedulerError>) {
        self.free_slots += 1;
        if job.answer(outcome) {
            if let Some(state) = &mut self.shutdown {
                state.report.drained.push(job.job_ref.clone());
            }
        }
    }

    /// Completes a lease whose job will not report tokens, in a detached task (best effort).
    /// `over_count` keeps the whole reservation (the call may have happened); otherwise the
    /// job never ran and every amount is 0.
    pub(super) fn release(
        &self,
        job: &Job,
        requirements: &[Requirement],
        over_count_amounts: bool,
    ) {
        let actuals = if over_count_amounts {
            over_count(requirements)
        } else {
            requirements
                .iter()
                .map(|r| Actual::new(r.key.clone(), 0))
                .collect()
        };
        let request = CompleteRequest {
            lease_id: job.lease.to_string(),
            job_id: Some(job.job_ref.job_id.clone()),
            actuals,
        };
        let limiter = self.limiter.clone();
        let lease = job.lease;
        actix_rt::spawn(async move { log_complete(lease, limiter.complete(request).await) });
    }
}

fn log_complete(lease: LeaseId, answer: Result<crate::model::CompleteResponse, LimiterError>) {
    match answer {
        Ok(response) if response.ok => {}
        Ok(response) => warn!("complete of lease {lease} answered {:?}", response.error),
        Err(e) => {
            warn!("complete of lease {lease} failed ({e}); its reservations expire on their own")
        }
    }
}

impl Handler<Submit> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if self.shutdown.is_some() {
            let _ = msg.done.send(Err(SchedulerError::ShutDown));
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let queue = (msg.spec.provider.clone(), msg.spec.model.clone());
        let job = Job {
            seq,
            job_ref: JobRef {
                job_id: ulid::Ulid::new().to_string(),
                provider: msg.spec.provider.clone(),
                model: msg.spec.model.clone(),
            },
            spec: msg.spec,
            queue: queue.clone(),
            lease: LeaseId::new(),
            unknown_attempts: 0,
            completions_at_reserve: 0,
            first_unknown_at: None,
            execute: Some(msg.execute),
            done: Some(msg.done),
        };
        self.queues.push_back(&queue, job);
        self.dispatch(ctx);
    }
}
