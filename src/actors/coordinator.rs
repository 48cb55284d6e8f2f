//! `ReserveCoordinator`: gives a multi-key reserve its all-or-nothing meaning and owns the
//! lease table (idempotent reserve and complete, denied lease ids stay denied).
//!
//! Protocol: `TryTake` goes to every involved key actor at once; each takes capacity if it
//! fits. If any says no, the coordinator sends `Release` to those that took and waits for
//! them before answering *denied*. Capacity is never over-granted at any instant; a
//! concurrent reserve may be denied while a tentative take is rolled back, which errs on the
//! safe side. A reserve repeated while the first is still being decided waits for its answer.

use std::collections::HashMap;

use actix::prelude::*;
use futures::future::{join_all, BoxFuture};
use log::warn;
use tokio::sync::oneshot;

use super::limit_actor::{
    GetUsage, LimitActor, Reconcile, Redefine, Release, TakeResult, TryDecrease, TryTake,
};
use crate::backend::{BackendError, Fault, Outage, ReserveOutcome};
use crate::model::leases::{Hold, LeaseOutcome, LeaseTable};
mod snapshot;

pub use snapshot::{BlockAllUntil, RestoreSnapshot, RestoreSummary, TakeSnapshot};

use crate::model::{
    CompleteCommand, LimitDefinition, LimitKind, ReserveCommand, RetryPolicy, SharedClock, Usage,
};

/// What a key actor that no longer answers means for the caller.
const KEY_ACTOR_STOPPED: Outage = Outage::Stopped {
    worker: "a key actor",
};

/// Reserve every requirement or none.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReserveOutcome, BackendError>")]
pub struct Reserve(pub ReserveCommand);

/// Release holds and reconcile reservations of a lease.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BackendError>")]
pub struct Complete(pub CompleteCommand);

/// Create a key or replace its definition.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Define(pub LimitDefinition);

/// Live usage of a key.
#[derive(Debug, Message)]
#[rtype(result = "Result<Usage, BackendError>")]
pub struct KeyUsage(pub String);

/// Answers `Ok` if the coordinator and every key actor are running.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), BackendError>")]
pub struct Ping;

/// Apply a pending decrease if enough capacity is free.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, BackendError>")]
pub struct Decrease {
    /// The key.
    pub key: String,
    /// The new capacity.
    pub to: u64,
}

/// What the coordinator knows of a key.
#[derive(Debug)]
struct KeyEntry {
    actor: Addr<LimitActor>,
    kind: LimitKind,
    hold_ms: i64,
}

type Waiter = oneshot::Sender<Result<ReserveOutcome, BackendError>>;

/// The memory backend's front actor.
#[derive(Debug)]
pub struct ReserveCoordinator {
    clock: SharedClock,
    policy: RetryPolicy,
    keys: HashMap<String, KeyEntry>,
    leases: LeaseTable,
    /// Repeats of a reserve that is still being decided, answered when it settles.
    waiters: HashMap<crate::model::LeaseId, Vec<Waiter>>,
    /// Counts changes of the live state (reserves, completes, definitions), so a periodic
    /// snapshot is skipped when nothing changed.
    generation: u64,
}

impl Actor for ReserveCoordinator {
    type Context = Context<Self>;
}

impl ReserveCoordinator {
    /// A coordinator with no keys, remembering at most `max_leases` leases.
    pub fn new(clock: SharedClock, policy: RetryPolicy, max_leases: usize) -> Self {
        ReserveCoordinator {
            clock,
            policy,
            keys: HashMap::new(),
            leases: LeaseTable::new(max_leases),
            waiters: HashMap::new(),
            generation: 0,
        }
    }

    fn unknown(key: &str) -> BackendError {
        Fault::UnknownKey {
            backend: "memory",
            key: key.to_string(),
        }
        .into()
    }
}

fn ready<T: 'static>(value: T) -> ResponseActFuture<ReserveCoordinator, T> {
    Box::pin(fut::ready(value))
}

/// The answer a remembered lease gets again.
fn replay(outcome: LeaseOutcome) -> Option<ReserveOutcome> {
    match outcome {
        LeaseOutcome::Allowed { reserved_at_ms, .. } => {
            Some(ReserveOutcome::Allowed { reserved_at_ms })
        }
        LeaseOutcome::Denied { retry_after_ms } => Some(ReserveOutcome::Denied { retry_after_ms }),
        LeaseOutcome::Pending => None,
    }
}

impl Handler<Reserve> for ReserveCoordinator {
    type Result = ResponseActFuture<Self, Result<ReserveOutcome, BackendError>>;

    fn handle(&mut self, Reserve(command): Reserve, _: &mut Context<Self>) -> Self::Result {
        let now_ms = self.clock.now_ms();
        let lease = command.lease;
        if let Some(outcome) = self.leases.get(lease, now_ms) {
            if let Some(answer) = replay(outcome) {
                return ready(Ok(answer));
            }
            let (tx, rx) = oneshot::channel();
            self.waiters.entry(lease).or_default().push(tx);
            return Box::pin(fut::wrap_future(async move {
                rx.await.unwrap_or_else(|_| Err(Outage::Abandoned.into()))
            }));
        }
        let mut holds = Vec::with_capacity(command.requirements.len());
        let mut actors = Vec::with_capacity(command.requirements.len());
        let mut longest_hold_ms = 0;
        for requirement in command.requirements {
            let Some(entry) = self.keys.get(&requirement.key) else {
                return ready(Err(Self::unknown(&requirement.key)));
            };
            longest_hold_ms = longest_hold_ms.max(entry.hold_ms);
            actors.push(entry.actor.clone());
            holds.push(Hold {
                key: requirement.key,
                amount: requirement.amount,
                kind: entry.kind,
            });
        }
        // `get` found nothing at this same `now_ms`, so the lease must be new here; a lease
        // already being decided is answered by the waiters above, never decided twice. The
        // table refuses only when every slot holds a lease in flight.
        let began = match self.leases.begin(lease, now_ms) {
            Ok(began) => began,
            Err(full) => return ready(Err(full.into())),
        };
        debug_assert!(began, "lease {lease} was unknown a moment ago");
        if !began {
            return ready(Err(Fault::LeaseInProgress { lease }.into()));
        }
        self.generation += 1;
        // Sent now, in order: a batch's items reach each key actor in array order.
        let takes: Vec<_> = actors
            .iter()
            .zip(&holds)
            .map(|(actor, hold)| {
                actor.send(TryTake {
                    lease,
                    amount: hold.amount,
                    now_ms,
                })
            })
            .collect();
        let decide = async move {
            let answers = join_all(takes).await;
            let mut denied_hint = None;
            let mut failed = false;
            let mut taken = Vec::new();
            for (actor, answer) in actors.iter().zip(answers) {
                match answer {
                    Ok(TakeResult::Taken) => taken.push(actor.clone()),
                    Ok(TakeResult::NotFit { retry_after_ms }) => {
                        denied_hint = Some(denied_hint.unwrap_or(0).max(retry_after_ms));
                    }
                    Err(_) => failed = true,
                }
            }
            if denied_hint.is_none() && !failed {
                return Ok(ReserveOutcome::Allowed {
                    reserved_at_ms: now_ms,
                });
            }
            join_all(taken.iter().map(|actor| actor.send(Release { lease }))).await;
            match denied_hint {
                Some(retry_after_ms) if !failed => Ok(ReserveOutcome::Denied { retry_after_ms }),
                _ => Err(BackendError::from(KEY_ACTOR_STOPPED)),
            }
        };
        Box::pin(
            fut::wrap_future(decide).map(move |result, act: &mut Self, _| {
                match &result {
                    Ok(ReserveOutcome::Allowed { .. }) => {
                        act.leases.allow(lease, now_ms, holds, longest_hold_ms)
                    }
                    Ok(ReserveOutcome::Denied { retry_after_ms }) => {
                        act.leases
                            .deny(lease, now_ms, *retry_after_ms, longest_hold_ms)
                    }
                    Err(_) => act.leases.abandon(lease),
                }
                for waiter in act.waiters.remove(&lease).unwrap_or_default() {
                    let _ = waiter.send(result.clone());
                }
                result
            }),
        )
    }
}

impl Handler<Complete> for ReserveCoordinator {
    type Result = ResponseActFuture<Self, Result<(), BackendError>>;

    fn handle(&mut self, Complete(command): Complete, _: &mut Context<Self>) -> Self::Result {
        let now_ms = self.clock.now_ms();
        let Some((_, holds)) = self.leases.start_complete(command.lease, now_ms) else {
            return ready(Ok(()));
        };
        self.generation += 1;
        let lease = command.lease;
        let mut acks: Vec<BoxFuture<'static, Result<(), MailboxError>>> = Vec::new();
        for hold in holds {
            let Some(entry) = self.keys.get(&hold.key) else {
                continue;
            };
            match hold.kind {
                LimitKind::Concurrency => acks.push(Box::pin(entry.actor.send(Release { lease }))),
                LimitKind::Rolling => {
                    if let Some(actual) = command.actuals.iter().find(|a| a.key == hold.key) {
                        acks.push(Box::pin(entry.actor.send(Reconcile {
                            lease,
                            actual: actual.actual_amount,
                            now_ms,
                        })));
                    }
                }
            }
        }
        Box::pin(fut::wrap_future(async move {
            let all = join_all(acks).await;
            if all.iter().any(Result::is_err) {
                return Err(BackendError::from(KEY_ACTOR_STOPPED));
            }
            Ok(())
        }))
    }
}

impl Handler<Define> for ReserveCoordinator {
    type Result = ();

    fn handle(&mut self, Define(definition): Define, _: &mut Context<Self>) {
        self.generation += 1;
        let kind = definition.kind;
        let hold_ms = self.policy.hold_ms(&definition);
        match self.keys.get_mut(&definition.key) {
            Some(entry) => {
                entry.hold_ms = hold_ms;
                entry.actor.do_send(Redefine(definition));
            }
            None => {
                let key = definition.key.clone();
                let actor = LimitActor::new(definition, self.policy).start();
                self.keys.insert(
                    key,
                    KeyEntry {
                        actor,
                        kind,
                        hold_ms,
                    },
                );
            }
        }
    }
}

impl Handler<KeyUsage> for ReserveCoordinator {
    type Result = ResponseActFuture<Self, Result<Usage, BackendError>>;

    fn handle(&mut self, KeyUsage(key): KeyUsage, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.keys.get(&key) else {
            return ready(Err(Self::unknown(&key)));
        };
        let request = entry.actor.send(GetUsage {
            now_ms: self.clock.now_ms(),
        });
        Box::pin(fut::wrap_future(async move {
            request
                .await
                .map_err(|_| BackendError::from(KEY_ACTOR_STOPPED))
        }))
    }
}

impl Handler<Decrease> for ReserveCoordinator {
    type Result = ResponseActFuture<Self, Result<bool, BackendError>>;

    fn handle(&mut self, msg: Decrease, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.keys.get(&msg.key) else {
            return ready(Err(Self::unknown(&msg.key)));
        };
        let request = entry.actor.send(TryDecrease {
            to: msg.to,
            now_ms: self.clock.now_ms(),
        });
        Box::pin(fut::wrap_future(async move {
            request
                .await
                .map_err(|_| BackendError::from(KEY_ACTOR_STOPPED))
        }))
    }
}

impl Handler<Ping> for ReserveCoordinator {
    type Result = Result<(), BackendError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        match self.keys.iter().find(|(_, entry)| !entry.actor.connected()) {
            Some((key, _)) => {
                warn!("the actor of key {key} stopped");
                Err(BackendError::from(KEY_ACTOR_STOPPED))
            }
            None => Ok(()),
        }
    }
}
