//! `ReserveCoordinator`: gives a multi-key reserve its all-or-nothing meaning across the key
//! shards and owns the lease table (idempotent reserve and complete, denied lease ids stay
//! denied). It runs in the caller's task — an HTTP worker, or the embedding program — rather
//! than as an actor of its own: a reserve costs one message per shard its keys live on (one
//! when they share a shard) instead of a hop to a central actor first, and every worker
//! reaches the shards in parallel.
//!
//! Protocol: every involved shard takes its part of a reserve (its keys) all or nothing, and
//! answers where it put each reservation; those places are kept with the lease's holds in
//! the lease table, so `complete` and rollbacks find them without an index by lease. If any
//! shard says no, what the others took is given back (acknowledged) before the answer
//! *denied*. Capacity is never over-granted at any instant; a concurrent reserve may be
//! denied while a tentative take is rolled back, which errs on the safe side. A reserve
//! repeated while the first is still being decided waits for its answer.
//!
//! Order: a shard found idle applies the part at once on the caller's thread; a busy one
//! gets it in its inbox (`ShardInbox`), drained in order by whoever finds it idle next. Both
//! happen when the reserve starts, before it first waits, so the items of a batch (started
//! in array order) reach each shard in array order.
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
use smallvec::SmallVec;
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
mod take;

pub use snapshot::RestoreSummary;
use take::{by_shard, key_places, ShardPart, TakeAnswer, Undecided};

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
        let mut items: SmallVec<[_; 4]> = SmallVec::new();
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
                    place: None,
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
        let parts = by_shard(items.into_iter());
        let mut undecided = Undecided {
            coordinator: self,
            lease,
            parts: &parts,
            answers: SmallVec::new(),
            armed: true,
        };
        // Taken now on an idle shard, else queued; either way before the first wait, so a
        // batch's items reach each shard in array order.
        for part in &parts {
            let shard = &self.shards[part.shard];
            let answer = match shard.run_now(|keys| keys.take(lease, &part.items, now_ms)) {
                Some(taken) => TakeAnswer::Ready(taken),
                None => {
                    let (tx, rx) = oneshot::channel();
                    let items = part.items.to_vec();
                    shard.post(ShardOp::Take(
                        TakeAll {
                            lease,
                            items,
                            now_ms,
                        },
                        tx,
                    ));
                    TakeAnswer::Queued(rx)
                }
            };
            undecided.answers.push(answer);
        }
        for answer in undecided.answers.iter_mut() {
            if let TakeAnswer::Queued(rx) = answer {
                // Outside tokio's per-task budget, like actor messages: a task awaiting
                // thousands of reserves (one batch) must not starve its own timers.
                *answer = match tokio::task::unconstrained(rx).await {
                    Ok(taken) => TakeAnswer::Ready(taken),
                    Err(_) => TakeAnswer::Stopped,
                };
            }
        }
        let answers = std::mem::take(&mut undecided.answers);
        let result = self
            .decide(lease, now_ms, &parts, answers, &mut holds)
            .await;
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

    /// Turns the shards' answers into the outcome: allowed, with where each hold was taken
    /// written into `holds`; or not, with what was taken rolled back (acknowledged before the
    /// denial is answered).
    async fn decide(
        &self,
        lease: LeaseId,
        now_ms: i64,
        parts: &[ShardPart],
        answers: SmallVec<[TakeAnswer; 2]>,
        holds: &mut [Hold],
    ) -> Result<ReserveOutcome, BackendError> {
        let mut denied_hint = None;
        let mut failure = None;
        // The parts taken, with where.
        let mut taken: SmallVec<[_; 2]> = SmallVec::new();
        for (part, answer) in parts.iter().zip(answers) {
            match answer {
                TakeAnswer::Ready(ShardTake::Taken(places)) => taken.push((part, places)),
                TakeAnswer::Ready(ShardTake::NotFit { retry_after_ms }) => {
                    denied_hint = Some(denied_hint.unwrap_or(0).max(retry_after_ms));
                }
                TakeAnswer::Ready(ShardTake::Unknown(key)) => failure = Some(unknown(&key)),
                TakeAnswer::Queued(_) | TakeAnswer::Stopped => failure = Some(stopped(())),
            }
        }
        if denied_hint.is_none() && failure.is_none() {
            for (part, places) in taken {
                for (&index, place) in part.requirements.iter().zip(places) {
                    if let Some(hold) = holds.get_mut(index) {
                        hold.place = Some(place);
                    }
                }
            }
            return Ok(ReserveOutcome::Allowed {
                reserved_at_ms: now_ms,
            });
        }
        self.on_every_shard(
            taken
                .into_iter()
                .map(|(part, places)| (part.shard, (part, places))),
            |keys, (part, places)| keys.release_taken(lease, &part.items, places),
            |(part, places), ack| {
                let keys = key_places(&part.items, &places);
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
        let mut settles: SmallVec<[Settle; 2]> = SmallVec::new();
        let mut shard_ids: SmallVec<[usize; 2]> = SmallVec::new();
        {
            let directory = self.directory();
            for hold in holds.iter() {
                let Some(entry) = directory.get(&*hold.key) else {
                    continue;
                };
                let at = match shard_ids.iter().position(|&s| s == entry.shard) {
                    Some(at) => at,
                    None => {
                        shard_ids.push(entry.shard);
                        settles.push(Settle {
                            lease,
                            releases: SmallVec::new(),
                            reconciles: SmallVec::new(),
                            now_ms,
                        });
                        settles.len() - 1
                    }
                };
                let key = (Arc::clone(&entry.name), hold.place);
                match hold.kind {
                    LimitKind::Concurrency => settles[at].releases.push(key),
                    LimitKind::Rolling => {
                        if let Some(actual) = command.actuals.iter().find(|a| *a.key == *hold.key) {
                            settles[at].reconciles.push((key, actual.actual_amount));
                        }
                    }
                }
            }
        }
        self.on_every_shard(
            shard_ids.into_iter().zip(settles),
            |keys, settle| keys.settle(settle),
            |settle, ack| ShardOp::Settle(Box::new(settle), ack),
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

    /// A reserve of one unit on each of `keys`, for a new lease.
    fn one_each(keys: &[&str]) -> ReserveCommand {
        ReserveCommand {
            lease: LeaseId::new(),
            job_id: None,
            requirements: keys.iter().map(|key| Requirement::new(*key, 1)).collect(),
        }
    }

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
        let command = one_each(&["k"]);
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

    #[actix_rt::test]
    async fn a_reserve_dropped_mid_way_gives_back_both_what_was_taken_at_once_and_what_was_queued()
    {
        let (idle, busy) = (Arbiter::new(), Arbiter::new());
        let policy = RetryPolicy::default();
        let shards = vec![
            ShardHandle::start(policy, Some(&idle.handle())),
            ShardHandle::start(policy, Some(&busy.handle())),
        ];
        let coordinator = ReserveCoordinator::new(ManualClock::new(0), policy, 10, shards);
        // One key on each shard.
        let key_on = |shard: usize| {
            (0..)
                .map(|i| format!("k{i}"))
                .find(|k| shard_of(k, 2) == shard)
                .unwrap()
        };
        let (taken_at_once, queued) = (key_on(0), key_on(1));
        for key in [&taken_at_once, &queued] {
            coordinator
                .define(LimitDefinition::concurrency(key.as_str(), 1, 600))
                .await
                .unwrap();
        }
        coordinator.shards[1].lock_keys_for(&busy.handle(), Duration::from_millis(200));
        let command = one_each(&[&taken_at_once, &queued]);
        let checks = async {
            {
                let mut reserve = Box::pin(coordinator.reserve(command.clone()));
                assert!(futures::poll!(reserve.as_mut()).is_pending());
                assert_eq!(coordinator.usage(&taken_at_once).await.unwrap().in_use, 1);
            }
            // The idle shard's part is released by place; the queued part by its shard,
            // which finds nobody to answer.
            assert_eq!(coordinator.usage(&taken_at_once).await.unwrap().in_use, 0);
            assert_eq!(coordinator.usage(&queued).await.unwrap().in_use, 0);
            assert!(matches!(
                coordinator.reserve(command).await,
                Ok(ReserveOutcome::Allowed { .. })
            ));
        };
        tokio::time::timeout(Duration::from_secs(10), checks)
            .await
            .expect("done within 10 s");
        idle.stop();
        busy.stop();
    }
}
