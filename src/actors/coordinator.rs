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
//! The lease table is split by lease id into parts, each behind one short lock never held
//! across a wait; the key directory (which shard owns a key, its kind and longest hold)
//! behind a read-mostly lock.

use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use futures::future::join_all;
use log::warn;
use tokio::sync::oneshot;

use super::key_shard::{GetUsage, KeyName, KeyShard, KeySlot, Ping, Put, ShardHandle, TryDecrease};
use super::placement::shard_of;
use super::spin::spin_for;
use crate::backend::{BackendError, Fault, Outage, ReserveOutcome};
use crate::model::lease_ids::{lease_part, lease_parts};
use crate::model::leases::{LeaseOutcome, LeaseTable};
use crate::model::{LeaseId, LimitDefinition, LimitKind, RetryPolicy, SharedClock, Usage};
use crate::read_mostly::ReadMostly;

mod reserve;
mod snapshot;
mod take;

pub use snapshot::RestoreSummary;

/// How long a caller looks for a shard's answer before its task sleeps.
const SPIN_FOR_ANSWER: Duration = Duration::from_micros(20);

/// What a shard that no longer answers means for the caller.
const KEY_ACTOR_STOPPED: Outage = Outage::Stopped {
    worker: "a key shard actor",
};

/// One part of the lease book, with how many leases it has in flight as of its last
/// unlock (read by the other parts without their locks). Each part on cache lines of its
/// own, so callers on different parts never write the same line.
#[derive(Debug)]
#[repr(align(128))]
struct BookPart {
    book: Mutex<LeaseBook>,
    in_flight: AtomicUsize,
}

/// A locked part of the lease book; publishes its count in flight when unlocked.
struct BookGuard<'a> {
    book: MutexGuard<'a, LeaseBook>,
    part: &'a BookPart,
    coordinator: &'a ReserveCoordinator,
}

impl std::ops::Deref for BookGuard<'_> {
    type Target = LeaseBook;

    fn deref(&self) -> &LeaseBook {
        &self.book
    }
}

impl std::ops::DerefMut for BookGuard<'_> {
    fn deref_mut(&mut self) -> &mut LeaseBook {
        &mut self.book
    }
}

impl Drop for BookGuard<'_> {
    fn drop(&mut self) {
        // Only the lock's holder writes the count: a plain load and store do.
        let now = self.book.table.in_flight();
        let before = self.part.in_flight.load(Ordering::Relaxed);
        if before == now {
            return;
        }
        self.part.in_flight.store(now, Ordering::Relaxed);
        // The whole book's count beyond the shares moves only near capacity.
        let share = self.coordinator.book_share;
        let (over_before, over_now) = (before.saturating_sub(share), now.saturating_sub(share));
        let over = &self.coordinator.over_share;
        if over_now > over_before {
            over.fetch_add(over_now - over_before, Ordering::Relaxed);
        } else if over_before > over_now {
            over.fetch_sub(over_before - over_now, Ordering::Relaxed);
        }
    }
}

/// What the coordinator knows of a key.
#[derive(Debug, Clone)]
struct KeyEntry {
    name: KeyName,
    shard: usize,
    /// The key's slot in its shard.
    slot: KeySlot,
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

/// Leases per part of the lease book: a table with room for fewer is one part, so its bound
/// is exact; a larger one is split into a power of two of up to [`MAX_LEASE_PARTS`] parts by
/// lease id, so that callers on several threads rarely wait for each other's lock (and, with
/// ids from [`new_lease_id`](crate::model::new_lease_id), rarely write the same part).
const LEASES_PER_BOOK_PART: usize = 65_536;

/// The memory backend's coordinator over its key shards.
#[derive(Debug)]
pub struct ReserveCoordinator {
    clock: SharedClock,
    policy: RetryPolicy,
    shards: Vec<ShardHandle>,
    /// Every key's entry, read by every reserve: copied per reader slot.
    directory: ReadMostly<HashMap<KeyName, KeyEntry>>,
    /// The lease book, in parts by lease id. A part takes a new lease while it has fewer in
    /// flight than its share of `lease_capacity`, or beyond that while the whole book has
    /// fewer than `lease_capacity` (each part's last published count). Each part keeps its
    /// share of settled leases.
    books: Box<[BookPart]>,
    lease_capacity: usize,
    /// Each part's share of `lease_capacity` (rounded down, so the shares fit in it).
    book_share: usize,
    /// By how many leases in flight the parts exceed their shares, summed.
    over_share: AtomicUsize,
    /// Set after each change of the live state (reserves, completes, definitions); a
    /// snapshot clears it and moves `generation` on, and is skipped when nothing changed.
    /// Callers only write the flag when it is clear, so its cache line is not handed from
    /// core to core at every call.
    dirty: AtomicBool,
    generation: AtomicU64,
}

/// How many parts a lease book of `capacity` has.
fn book_parts(capacity: usize) -> usize {
    lease_parts(capacity / LEASES_PER_BOOK_PART)
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
///
/// The item is usually being applied right now by a caller on another core, a matter of
/// microseconds: the answer is looked for a moment ([`SPIN_FOR_ANSWER`]) before the task
/// sleeps, since being woken from another thread costs far more. The caller queued its
/// items without waiting, so it may have applied its parts on idle shards meanwhile.
async fn answer<T>(rx: &mut oneshot::Receiver<T>) -> Result<T, BackendError> {
    let ready = spin_for(SPIN_FOR_ANSWER, 8, || match rx.try_recv() {
        Ok(answer) => Some(Ok(answer)),
        Err(oneshot::error::TryRecvError::Closed) => Some(Err(stopped(()))),
        Err(oneshot::error::TryRecvError::Empty) => None,
    });
    if let Some(ready) = ready {
        return ready;
    }
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

impl ReserveCoordinator {
    /// A coordinator over `shards`, remembering at most `max_leases` leases.
    pub fn new(
        clock: SharedClock,
        policy: RetryPolicy,
        max_leases: usize,
        shards: Vec<ShardHandle>,
    ) -> Self {
        let parts = book_parts(max_leases);
        ReserveCoordinator {
            clock,
            policy,
            shards,
            directory: ReadMostly::new(HashMap::new()),
            books: (0..parts)
                .map(|_| BookPart {
                    book: Mutex::new(LeaseBook {
                        table: LeaseTable::new(max_leases.div_ceil(parts)),
                        waiters: HashMap::new(),
                    }),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
            lease_capacity: max_leases.max(1),
            book_share: (max_leases / parts).max(1),
            over_share: AtomicUsize::new(0),
            dirty: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// Which part of the lease book keeps `lease` (by the lowest bits of its id).
    fn book_part(&self, lease: LeaseId) -> usize {
        lease_part(lease, self.books.len())
    }

    /// `part` of the lease book, locked.
    fn lock_book<'a>(&'a self, part: &'a BookPart) -> BookGuard<'a> {
        BookGuard {
            book: part.book.lock().unwrap_or_else(|p| p.into_inner()),
            part,
            coordinator: self,
        }
    }

    /// The part of the lease book that keeps `lease`, locked.
    fn book(&self, lease: LeaseId) -> BookGuard<'_> {
        self.lock_book(&self.books[self.book_part(lease)])
    }

    /// Whether the part of `lease`, with `in_flight` leases in flight, may take one more:
    /// at once while it is below its share and no part is beyond its own (then the whole
    /// book is below its capacity), else if the whole book has room.
    fn book_fits(&self, lease: LeaseId, in_flight: usize) -> bool {
        if in_flight < self.book_share && self.over_share.load(Ordering::Relaxed) == 0 {
            return true;
        }
        let part = self.book_part(lease);
        let others: usize = (self.books.iter().enumerate())
            .filter(|&(other, _)| other != part)
            .map(|(_, book)| book.in_flight.load(Ordering::Relaxed))
            .sum();
        others + in_flight < self.lease_capacity
    }

    fn directory(&self) -> std::sync::RwLockReadGuard<'_, HashMap<KeyName, KeyEntry>> {
        self.directory.read()
    }

    fn entry(&self, key: &str) -> Option<KeyEntry> {
        self.directory().get(key).cloned()
    }

    /// Notes a change of the live state (after it is made, so a snapshot that clears the
    /// flag sees it).
    fn changed(&self) {
        if !self.dirty.load(Ordering::Relaxed) {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// The generation of the live state as it is now.
    fn generation(&self) -> u64 {
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.generation.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.generation.load(Ordering::Acquire)
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        shard_of(key, self.shards.len())
    }

    /// Creates a key on its shard, or replaces its definition.
    pub async fn define(&self, definition: LimitDefinition) -> Result<(), BackendError> {
        // The shard files a new key under this name (a known key keeps its own).
        let name: KeyName = Arc::from(definition.key.as_str());
        let shard = self.shard_of(&definition.key);
        let (kind, hold_ms) = (definition.kind, self.policy.hold_ms(&definition));
        // The shard knows the key before any reserve can find it in the directory.
        let slot = self.shards[shard]
            .addr
            .send(Put(Arc::clone(&name), definition))
            .await
            .map_err(stopped)?;
        let entry = KeyEntry {
            name,
            shard,
            slot,
            kind,
            hold_ms,
        };
        self.changed();
        // Each copy of the directory gets its own copy of the name: a reserve shares the
        // name with its lease's holds, and the name's reference count then stays with the
        // threads of one slot instead of passing between cores.
        self.directory.update(|directory| {
            let name: KeyName = match directory.get_key_value(&*entry.name) {
                Some((known, _)) => Arc::clone(known),
                None => Arc::from(&*entry.name),
            };
            let entry = KeyEntry {
                name: Arc::clone(&name),
                ..entry.clone()
            };
            directory.insert(name, entry);
        });
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
mod tests;
