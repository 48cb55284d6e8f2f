//! `ReserveCoordinator`: gives a multi-key reserve its all-or-nothing meaning across the key
//! shards and owns the lease table (idempotent reserve and complete, denied lease ids stay
//! denied). It runs in the caller's task — an HTTP worker, or the embedding program — rather
//! than as an actor of its own: a reserve costs one message per shard its keys live on (one
//! when they share a shard) instead of a hop to a central actor first, and every worker
//! reaches the shards in parallel.
//!
//! Protocol: `TakeAll` is queued for every involved shard at once; each takes its keys all or
//! nothing. If any shard says no, `ReleaseAll` goes to those that took and is acknowledged
//! before the answer *denied*. Capacity is never over-granted at any instant; a concurrent
//! reserve may be denied while a tentative take is rolled back, which errs on the safe side.
//! A reserve repeated while the first is still being decided waits for its answer.
//!
//! Order: the takes of one reserve are queued when it starts, before it first waits, so the
//! items of a batch (started in array order) reach each shard in array order. Takes,
//! rollbacks and settles go through each shard's inbox (`ShardInbox`): a caller that finds
//! the shard idle applies them on its own thread, so a reserve usually crosses no thread;
//! under load one drainer applies everything that arrived meanwhile in one go.
//!
//! The lease table sits behind one short lock, never held across a wait; the key directory
//! (which shard owns a key, its kind and longest hold) behind a read-mostly lock.

use foldhash::{HashMap, HashMapExt};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use actix::prelude::*;
use futures::future::join_all;
use log::warn;
use tokio::sync::oneshot;

use super::key_shard::{
    GetUsage, KeyName, KeyShard, Ping, Put, ReleaseAll, Settle, ShardHandle, ShardKeys, ShardOp,
    ShardTake, TakeAll, TryDecrease,
};
use crate::backend::{BackendError, Fault, Outage, ReserveOutcome};
use crate::model::leases::{Begun, Hold, LeaseOutcome, LeaseTable};
use crate::model::{
    CompleteCommand, LeaseId, LimitDefinition, LimitKind, ReserveCommand, RetryPolicy, SharedClock,
    Usage,
};

mod snapshot;

pub use snapshot::RestoreSummary;

/// What a shard that no longer answers means for the caller.
const KEY_ACTOR_STOPPED: Outage = Outage::Stopped {
    worker: "a key shard actor",
};

/// What the coordinator knows of a key.
#[derive(Debug, Clone)]
struct KeyEntry {
    name: KeyName,
    shard: usize,
    kind: LimitKind,
    hold_ms: i64,
}

type Waiter = oneshot::Sender<Result<ReserveOutcome, BackendError>>;

/// The lease table and the repeats waiting for a lease being decided.
#[derive(Debug)]
struct LeaseBook {
    table: LeaseTable,
    waiters: HashMap<LeaseId, Vec<Waiter>>,
}

/// The memory backend's coordinator over its key shards.
#[derive(Debug)]
pub struct ReserveCoordinator {
    clock: SharedClock,
    policy: RetryPolicy,
    shards: Vec<ShardHandle>,
    directory: RwLock<HashMap<KeyName, KeyEntry>>,
    book: Mutex<LeaseBook>,
    /// Counts changes of the live state (reserves, completes, definitions), so a periodic
    /// snapshot is skipped when nothing changed.
    generation: AtomicU64,
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

fn stopped<E>(_: E) -> BackendError {
    BackendError::from(KEY_ACTOR_STOPPED)
}

/// A shard's answer to an item queued in its inbox; a dropped channel means it stopped.
async fn answer<T>(rx: oneshot::Receiver<T>) -> Result<T, BackendError> {
    // Outside tokio's per-task budget, like actor messages: a task awaiting thousands of
    // reserves (one `join_all`) must not exhaust its budget here and starve its own timers.
    tokio::task::unconstrained(rx).await.map_err(stopped)
}

fn unknown(key: &str) -> BackendError {
    Fault::UnknownKey {
        backend: "memory",
        key: key.to_string(),
    }
    .into()
}

/// The shard (of `shards`) that owns `key`: a fixed hash of the key.
pub fn shard_of(key: &str, shards: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as usize
}

/// One shard's part of a reserve: its keys with their amounts, in request order.
type ShardItems = (usize, Vec<(KeyName, u64)>);

/// Groups `items` by shard, keeping request order within each shard.
fn by_shard(items: impl Iterator<Item = (usize, KeyName, u64)>) -> Vec<ShardItems> {
    let mut groups: Vec<ShardItems> = Vec::new();
    for (shard, key, amount) in items {
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, group)) => group.push((key, amount)),
            None => groups.push((shard, vec![(key, amount)])),
        }
    }
    groups
}

/// The keys of one shard's part.
fn key_names(items: &[(KeyName, u64)]) -> Vec<KeyName> {
    items.iter().map(|(key, _)| Arc::clone(key)).collect()
}

/// A shard's answer: given at once (the shard was idle), or to wait for.
enum Pending<T> {
    Ready(T),
    Queued(oneshot::Receiver<T>),
}

impl<T> Pending<T> {
    async fn get(self) -> Result<T, BackendError> {
        match self {
            Pending::Ready(answer) => Ok(answer),
            Pending::Queued(rx) => answer(rx).await,
        }
    }
}

/// Rolls back a reserve whose caller stopped waiting before it was decided: whatever its
/// shards took is released (after the takes, in each shard's inbox order), the lease is
/// forgotten so the client may retry it, and repeats waiting for it are answered.
struct Undecided<'a> {
    coordinator: &'a ReserveCoordinator,
    lease: LeaseId,
    groups: &'a [ShardItems],
    armed: bool,
}

impl Drop for Undecided<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Queued behind the takes (never ahead of one still waiting in the inbox).
        for (shard, items) in self.groups {
            self.coordinator.shards[*shard].post(ShardOp::Release(
                ReleaseAll {
                    lease: self.lease,
                    keys: key_names(items),
                },
                None,
            ));
        }
        let mut book = self.coordinator.book();
        book.table.abandon(self.lease);
        for waiter in book.waiters.remove(&self.lease).unwrap_or_default() {
            let _ = waiter.send(Err(Outage::Abandoned.into()));
        }
    }
}

impl ReserveCoordinator {
    /// A coordinator over `shards`, remembering at most `max_leases` leases.
    pub fn new(
        clock: SharedClock,
        policy: RetryPolicy,
        max_leases: usize,
        shards: Vec<ShardHandle>,
    ) -> Self {
        ReserveCoordinator {
            clock,
            policy,
            shards,
            directory: RwLock::new(HashMap::new()),
            book: Mutex::new(LeaseBook {
                table: LeaseTable::new(max_leases),
                waiters: HashMap::new(),
            }),
            generation: AtomicU64::new(0),
        }
    }

    fn book(&self) -> MutexGuard<'_, LeaseBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn directory(&self) -> std::sync::RwLockReadGuard<'_, HashMap<KeyName, KeyEntry>> {
        self.directory.read().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, key: &str) -> Option<KeyEntry> {
        self.directory().get(key).cloned()
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn shard_of(&self, key: &str) -> usize {
        shard_of(key, self.shards.len())
    }

    /// Reserves every requirement or none.
    pub async fn reserve(&self, command: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        let now_ms = self.clock.now_ms();
        let lease = command.lease;
        let mut holds = Vec::with_capacity(command.requirements.len());
        let mut items = Vec::with_capacity(command.requirements.len());
        let mut longest_hold_ms = 0;
        // The keys first (the directory is read before the lease table is touched): a lease
        // with an unknown key is never recorded.
        let mut unknown_key = None;
        {
            let directory = self.directory();
            for requirement in &command.requirements {
                let Some(entry) = directory.get(requirement.key.as_str()) else {
                    unknown_key = Some(requirement.key.as_str());
                    break;
                };
                longest_hold_ms = longest_hold_ms.max(entry.hold_ms);
                items.push((entry.shard, Arc::clone(&entry.name), requirement.amount));
                holds.push(Hold {
                    key: Arc::clone(&entry.name),
                    amount: requirement.amount,
                    kind: entry.kind,
                    hold_ms: entry.hold_ms,
                });
            }
        }
        let waiting = {
            let mut book = self.book();
            let known = match unknown_key {
                // A remembered lease is answered as before, even if a key went away since.
                Some(key) => Some(book.table.get(lease, now_ms).ok_or_else(|| unknown(key))?),
                // The table refuses a new lease only when every slot holds one in flight.
                None => match book.table.begin(lease, now_ms)? {
                    Begun::New => None,
                    Begun::Known(outcome) => Some(outcome),
                },
            };
            match known.map(replay) {
                None => None,
                Some(Some(answer)) => return Ok(answer),
                Some(None) => {
                    // Being decided: wait for that answer.
                    let (tx, rx) = oneshot::channel();
                    book.waiters.entry(lease).or_default().push(tx);
                    Some(rx)
                }
            }
        };
        if let Some(rx) = waiting {
            return rx.await.unwrap_or_else(|_| Err(Outage::Abandoned.into()));
        }
        self.changed();
        let groups = by_shard(items.into_iter());
        let mut undecided = Undecided {
            coordinator: self,
            lease,
            groups: &groups,
            armed: true,
        };
        // Taken now on an idle shard, else queued; either way before the first wait, so a
        // batch's items reach each shard in array order.
        let takes: Vec<_> = groups
            .iter()
            .map(|(shard, items)| {
                let shard = &self.shards[*shard];
                match shard.run_now(|keys| keys.take(lease, items, now_ms)) {
                    Some(taken) => Pending::Ready(taken),
                    None => {
                        let (tx, rx) = oneshot::channel();
                        let items = items.clone();
                        shard.post(ShardOp::Take(
                            TakeAll {
                                lease,
                                items,
                                now_ms,
                            },
                            tx,
                        ));
                        Pending::Queued(rx)
                    }
                }
            })
            .collect();
        let mut answers = Vec::with_capacity(takes.len());
        for take in takes {
            answers.push(take.get().await);
        }
        let result = self.decide(lease, now_ms, &groups, answers).await;
        undecided.armed = false;
        let mut book = self.book();
        match &result {
            Ok(ReserveOutcome::Allowed { .. }) => {
                book.table.allow(lease, now_ms, holds, longest_hold_ms)
            }
            Ok(ReserveOutcome::Denied { retry_after_ms }) => {
                book.table
                    .deny(lease, now_ms, *retry_after_ms, longest_hold_ms)
            }
            Err(_) => book.table.abandon(lease),
        }
        for waiter in book.waiters.remove(&lease).unwrap_or_default() {
            let _ = waiter.send(result.clone());
        }
        result
    }

    /// Turns the shards' answers into the outcome, rolling back what was taken if anything
    /// did not fit (acknowledged before the denial is answered).
    async fn decide(
        &self,
        lease: LeaseId,
        now_ms: i64,
        groups: &[ShardItems],
        answers: Vec<Result<ShardTake, BackendError>>,
    ) -> Result<ReserveOutcome, BackendError> {
        let mut denied_hint = None;
        let mut failure = None;
        // Which groups took their part (copied only when something must be rolled back).
        let mut taken = Vec::new();
        for (group, answer) in groups.iter().zip(answers) {
            match answer {
                Ok(ShardTake::Taken) => taken.push(group),
                Ok(ShardTake::NotFit { retry_after_ms }) => {
                    denied_hint = Some(denied_hint.unwrap_or(0).max(retry_after_ms));
                }
                Ok(ShardTake::Unknown(key)) => failure = Some(unknown(&key)),
                Err(e) => failure = Some(e),
            }
        }
        if denied_hint.is_none() && failure.is_none() {
            return Ok(ReserveOutcome::Allowed {
                reserved_at_ms: now_ms,
            });
        }
        self.on_every_shard(
            taken
                .into_iter()
                .map(|(shard, items)| (*shard, items.as_slice())),
            |keys, items| keys.release_items(lease, items),
            |items, ack| {
                let keys = key_names(items);
                ShardOp::Release(ReleaseAll { lease, keys }, Some(ack))
            },
        )
        .await?;
        match (failure, denied_hint) {
            (None, Some(retry_after_ms)) => Ok(ReserveOutcome::Denied { retry_after_ms }),
            (Some(failure), _) => Err(failure),
            (None, None) => Err(stopped(())),
        }
    }

    /// Releases the holds and reconciles the reservations of an allowed lease (once; any
    /// other lease is a no-op).
    pub async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError> {
        let now_ms = self.clock.now_ms();
        let Some((_, holds)) = self.book().table.start_complete(command.lease, now_ms) else {
            return Ok(());
        };
        self.changed();
        let lease = command.lease;
        let mut settles: Vec<Settle> = Vec::new();
        let mut shard_ids: Vec<usize> = Vec::new();
        {
            let directory = self.directory();
            for hold in holds {
                let Some(entry) = directory.get(&*hold.key) else {
                    continue;
                };
                let at = match shard_ids.iter().position(|&s| s == entry.shard) {
                    Some(at) => at,
                    None => {
                        shard_ids.push(entry.shard);
                        settles.push(Settle {
                            lease,
                            releases: Vec::new(),
                            reconciles: Vec::new(),
                            now_ms,
                        });
                        settles.len() - 1
                    }
                };
                match hold.kind {
                    LimitKind::Concurrency => settles[at].releases.push(Arc::clone(&entry.name)),
                    LimitKind::Rolling => {
                        if let Some(actual) = command.actuals.iter().find(|a| *a.key == *hold.key) {
                            settles[at]
                                .reconciles
                                .push((Arc::clone(&entry.name), actual.actual_amount));
                        }
                    }
                }
            }
        }
        self.on_every_shard(
            shard_ids.into_iter().zip(settles),
            |keys, settle| keys.settle(settle),
            ShardOp::Settle,
        )
        .await
    }

    /// Applies each shard's part at once when that shard is idle (`now`), else queues it
    /// (`queued`, acknowledged) and waits for every acknowledgement.
    async fn on_every_shard<T>(
        &self,
        parts: impl Iterator<Item = (usize, T)>,
        now: impl Fn(&mut ShardKeys, &T),
        queued: impl Fn(T, oneshot::Sender<()>) -> ShardOp,
    ) -> Result<(), BackendError> {
        let mut acks = Vec::new();
        for (shard, part) in parts {
            let shard = &self.shards[shard];
            if shard.run_now(|keys| now(keys, &part)).is_none() {
                let (tx, rx) = oneshot::channel();
                shard.post(queued(part, tx));
                acks.push(rx);
            }
        }
        for ack in acks {
            answer(ack).await?;
        }
        Ok(())
    }

    /// Creates a key on its shard, or replaces its definition.
    pub async fn define(&self, definition: LimitDefinition) -> Result<(), BackendError> {
        let entry = KeyEntry {
            name: Arc::from(definition.key.as_str()),
            shard: self.shard_of(&definition.key),
            kind: definition.kind,
            hold_ms: self.policy.hold_ms(&definition),
        };
        // The shard knows the key before any reserve can find it in the directory.
        self.shards[entry.shard]
            .addr
            .send(Put(definition))
            .await
            .map_err(stopped)?;
        self.changed();
        let mut directory = self.directory.write().unwrap_or_else(|p| p.into_inner());
        directory.insert(Arc::clone(&entry.name), entry);
        Ok(())
    }

    /// Sends the message `make(key name, now)` to the shard that owns `key`; a shard that no
    /// longer knows the key answers `None`, which is `unknown_limit_key`.
    async fn ask_owner<M, R>(
        &self,
        key: &str,
        make: impl FnOnce(KeyName, i64) -> M,
    ) -> Result<R, BackendError>
    where
        M: Message<Result = Option<R>> + Send + 'static,
        R: Send + 'static,
        KeyShard: Handler<M>,
    {
        let entry = self.entry(key).ok_or_else(|| unknown(key))?;
        let message = make(entry.name, self.clock.now_ms());
        self.shards[entry.shard]
            .addr
            .send(message)
            .await
            .map_err(stopped)?
            .ok_or_else(|| unknown(key))
    }

    /// Live usage of a key.
    pub async fn usage(&self, key: &str) -> Result<Usage, BackendError> {
        self.ask_owner(key, |key, now_ms| GetUsage { key, now_ms })
            .await
    }

    /// Applies a pending decrease if enough capacity is free; answers whether it did.
    pub async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError> {
        self.ask_owner(key, |key, now_ms| TryDecrease { key, to, now_ms })
            .await
    }

    /// `Ok` if every shard runs.
    pub async fn ping(&self) -> Result<(), BackendError> {
        for (shard, answer) in join_all(self.shards.iter().map(|s| s.addr.send(Ping)))
            .await
            .into_iter()
            .enumerate()
        {
            if let Err(e) = answer {
                warn!("key shard {shard} stopped: {e}");
                return Err(stopped(e));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{ManualClock, Requirement};

    #[actix_rt::test]
    async fn a_reserve_dropped_mid_way_gives_back_what_it_took_and_can_be_retried() {
        let arbiter = Arbiter::new();
        let policy = RetryPolicy::default();
        let shards = vec![ShardHandle::start(policy, Some(&arbiter.handle()))];
        let coordinator = ReserveCoordinator::new(ManualClock::new(0), policy, 10, shards);
        coordinator
            .define(LimitDefinition::concurrency("k", 1, 600))
            .await
            .unwrap();
        // The shard's keys are busy: nothing is decided while the reserve is polled.
        coordinator.shards[0].lock_keys_for(&arbiter.handle(), Duration::from_millis(200));
        let command = ReserveCommand {
            lease: LeaseId::new(),
            job_id: None,
            requirements: vec![Requirement {
                key: "k".into(),
                amount: 1,
            }],
        };
        {
            let mut reserve = Box::pin(coordinator.reserve(command.clone()));
            assert!(futures::poll!(reserve.as_mut()).is_pending());
        }
        // Queued behind the take and its rollback.
        assert_eq!(coordinator.usage("k").await.unwrap().in_use, 0);
        assert!(matches!(
            coordinator.reserve(command).await,
            Ok(ReserveOutcome::Allowed { .. })
        ));
        arbiter.stop();
    }

    #[test]
    fn requirements_are_grouped_by_shard_in_request_order() {
        let key = |name: &str| -> KeyName { Arc::from(name) };
        let groups = by_shard([(1, key("a"), 1), (0, key("b"), 2), (1, key("c"), 3)].into_iter());
        assert_eq!(
            groups,
            vec![
                (1, vec![(key("a"), 1), (key("c"), 3)]),
                (0, vec![(key("b"), 2)])
            ]
        );
    }
}
