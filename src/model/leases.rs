//! The lease table: what each reserve attempt ended as, so that a repeated reserve is
//! idempotent, a denied lease id stays denied, and `complete` knows what to release.
//!
//! Lease metadata lives in memory only (SPEC §4 "Complete" 3). Two parts, each bounded to
//! the table's capacity (`lease_capacity`):
//!
//! - **In flight**: leases being decided, and allowed leases whose `complete` has not run.
//!   One is never forgotten before its longest hold has passed (after that its reservations
//!   have expired anyway), so `complete` always finds what to release. When every slot holds
//!   a live lease, [`LeaseTable::begin`] refuses the reserve ([`LeaseTableFull`]) before
//!   anything is taken.
//! - **Settled**: denied lease ids and completed leases, kept for replays until the longest
//!   hold of their keys has passed. When full, the one due soonest is forgotten first (for a
//!   storm of denials on one key: the oldest). This is the weaker guarantee: a forgotten
//!   denied id could be allowed if it were retried, and a reserve repeated after its lease
//!   completed and was forgotten takes capacity again (over-counts, never under-counts).
//!
//! Expired entries of both parts are purged on every access; every operation is O(log n).

use foldhash::{HashMap, HashMapExt};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::definition::LimitKind;
use super::forget_order::ForgetOrder;
use super::lease_map::LeaseMap;
use super::LeaseId;

/// What [`LeaseTable::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// A new lease, now pending.
    New,
    /// A lease already remembered, with its outcome; nothing changed.
    Known(LeaseOutcome),
}

/// Capacity one allowed lease holds on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The limit key (shared with the backend's key directory: copying a hold, as a
    /// snapshot does for every live lease, copies no string).
    pub key: std::sync::Arc<str>,
    /// Units reserved.
    pub amount: u64,
    /// The key's kind at reserve time.
    pub kind: LimitKind,
    /// How long the hold lasts after the reserve, as in force at reserve time (ms), so that
    /// a window or timeout changed later does not move it; 0 when unknown (snapshots
    /// written before this field).
    #[serde(default)]
    pub hold_ms: i64,
    /// Where the memory backend keeps the hold in its key (found without an index by
    /// lease); not saved: a hold taken back in from a snapshot is found by lease.
    #[serde(skip)]
    pub place: Option<super::Place>,
    /// Which of the memory backend's shards owns the key and at which slot (so `complete`
    /// goes straight there without looking the key up); not saved, like `place`.
    #[serde(skip)]
    pub home: Option<KeyHome>,
}

/// Where the memory backend keeps a key: its shard and its slot there. Packed in six bytes
/// of alignment 1, so that it fits beside the kind and a hold stays 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHome([u8; 6]);

impl KeyHome {
    /// `shard` and `slot` as kept in a hold; `None` if either is too large to keep (the key
    /// is then looked up by name when the lease completes).
    pub fn new(shard: usize, slot: usize) -> Option<Self> {
        let [s0, s1] = u16::try_from(shard).ok()?.to_le_bytes();
        let [k0, k1, k2, k3] = u32::try_from(slot).ok()?.to_le_bytes();
        Some(KeyHome([s0, s1, k0, k1, k2, k3]))
    }

    /// The shard.
    pub fn shard(self) -> usize {
        usize::from(u16::from_le_bytes([self.0[0], self.0[1]]))
    }

    /// The key's slot in its shard.
    pub fn slot(self) -> usize {
        let slot = u32::from_le_bytes([self.0[2], self.0[3], self.0[4], self.0[5]]);
        usize::try_from(slot).unwrap_or(usize::MAX)
    }
}

/// The holds of one allowed lease, shared: a snapshot copies a pointer under the table's
/// lock, not the list.
pub type Holds = std::sync::Arc<[Hold]>;

/// What a reserve attempt ended as, as far as the table remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The reserve is being decided right now.
    Pending,
    /// Allowed; `completed` turns true on the first complete.
    Allowed {
        /// When it was reserved (Unix ms).
        reserved_at_ms: i64,
        /// Whether `complete` already ran.
        completed: bool,
    },
    /// Denied; the lease id can never be allowed.
    Denied {
        /// The hint given at the denial, repeated to a client that retries the same id.
        retry_after_ms: u64,
    },
}

/// One remembered lease as saved in a snapshot: what it ended as and until when it is kept.
/// Leases still being decided are never saved (their reserve has not answered yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum LeaseRecord {
    /// Allowed, `complete` not run yet: its holds are released by a later `complete`.
    Allowed {
        /// The lease id.
        lease: LeaseId,
        /// When it was reserved (Unix ms).
        reserved_at_ms: i64,
        /// When the table forgets it (its longest hold has passed).
        forget_at_ms: i64,
        /// What it holds on each key.
        holds: Holds,
    },
    /// Allowed and completed: a replayed reserve is answered allowed again.
    Completed {
        /// The lease id.
        lease: LeaseId,
        /// When it was reserved (Unix ms).
        reserved_at_ms: i64,
        /// When the table forgets it.
        forget_at_ms: i64,
    },
    /// Denied: the id can never be allowed.
    Denied {
        /// The lease id.
        lease: LeaseId,
        /// The hint given at the denial.
        retry_after_ms: u64,
        /// When the table forgets it.
        forget_at_ms: i64,
    },
}

impl LeaseRecord {
    /// The lease id.
    pub fn lease(&self) -> LeaseId {
        match self {
            LeaseRecord::Allowed { lease, .. }
            | LeaseRecord::Completed { lease, .. }
            | LeaseRecord::Denied { lease, .. } => *lease,
        }
    }

    /// When the table forgets it.
    pub fn forget_at_ms(&self) -> i64 {
        match self {
            LeaseRecord::Allowed { forget_at_ms, .. }
            | LeaseRecord::Completed { forget_at_ms, .. }
            | LeaseRecord::Denied { forget_at_ms, .. } => *forget_at_ms,
        }
    }
}

/// A reserve was refused because every slot of the table holds a lease in flight.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
#[error(
    "the lease table is full: {capacity} leases are in flight (reserved, not completed, holds \
     not expired); raise --lease-capacity (config key lease_capacity, environment \
     RATELIMITERD_LEASE_CAPACITY)"
)]
pub struct LeaseTableFull {
    /// The table's capacity.
    pub capacity: usize,
}

/// What the table remembers of a decided lease.
#[derive(Debug)]
enum Decided {
    /// Allowed, `complete` not run yet: in flight.
    Allowed { reserved_at_ms: i64, holds: Holds },
    /// Allowed and completed: settled.
    Completed { reserved_at_ms: i64 },
    /// Denied: settled.
    Denied { retry_after_ms: u64 },
}

impl Decided {
    /// Whether the lease is in flight (else settled).
    fn in_flight(&self) -> bool {
        matches!(self, Decided::Allowed { .. })
    }

    fn outcome(&self) -> LeaseOutcome {
        match *self {
            Decided::Allowed { reserved_at_ms, .. } => LeaseOutcome::Allowed {
                reserved_at_ms,
                completed: false,
            },
            Decided::Completed { reserved_at_ms } => LeaseOutcome::Allowed {
                reserved_at_ms,
                completed: true,
            },
            Decided::Denied { retry_after_ms } => LeaseOutcome::Denied { retry_after_ms },
        }
    }
}

/// A decided lease and when the table forgets it (fixed when it is decided).
#[derive(Debug)]
struct Entry {
    decided: Decided,
    forget_at_ms: i64,
}

/// Default bound on leases in flight, and separately on settled leases.
pub const DEFAULT_MAX_LEASES: usize = 1_000_000;

/// How long a pending entry is kept at most, should its owner never settle it.
const PENDING_FORGET_MS: i64 = 10 * 60 * 1000;

/// Remembered reserve outcomes, bounded in time and in count.
///
/// One map holds every decided lease (a [`LeaseMap`], in parts by the time in the lease
/// id), so a reserve and its complete find their lease with one lookup each: `complete` turns the entry from allowed to completed in place, keeping
/// its forget time. Leases being decided are few at any time (a reserve is decided within
/// microseconds) and are kept apart, forgotten by a scan of that small map at most once per
/// [`PENDING_FORGET_MS`].
#[derive(Debug)]
pub struct LeaseTable {
    /// Leases being decided, with when each is forgotten should its owner never decide it.
    pending: HashMap<LeaseId, i64>,
    /// No pending lease is due before this time.
    pending_due_ms: i64,
    decided: LeaseMap<Entry>,
    /// When each allowed lease is forgotten.
    in_flight_order: ForgetOrder,
    /// When each settled lease is forgotten; when the settled part is full, the soonest due
    /// is forgotten first.
    settled_order: ForgetOrder,
    /// Allowed leases not completed.
    allowed: usize,
    /// Completed and denied leases.
    settled: usize,
    capacity: usize,
    settled_dropped: u64,
    refused: u64,
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable::new(DEFAULT_MAX_LEASES)
    }
}

impl LeaseTable {
    /// An empty table holding at most `capacity` leases in flight and, separately, at most
    /// `capacity` settled leases.
    pub fn new(capacity: usize) -> Self {
        LeaseTable {
            pending: HashMap::new(),
            pending_due_ms: i64::MAX,
            decided: LeaseMap::default(),
            in_flight_order: ForgetOrder::default(),
            settled_order: ForgetOrder::default(),
            allowed: 0,
            settled: 0,
            capacity: capacity.max(1),
            settled_dropped: 0,
            refused: 0,
        }
    }

    /// Number of remembered leases, in flight and settled.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len() + self.decided.len()
    }

    /// Whether nothing is remembered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of leases in flight (pending, or allowed and not completed).
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.allowed
    }

    /// How many settled leases (denied ids, completed leases) were forgotten before their
    /// time to make room for newer ones (a sign the capacity is too low).
    #[cfg(test)]
    pub fn settled_dropped(&self) -> u64 {
        self.settled_dropped
    }

    /// How many reserves [`LeaseTable::begin`] refused because the table was full.
    #[cfg(test)]
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The outcome remembered for `lease`, after forgetting what is due at `now_ms`.
    pub fn get(&mut self, lease: LeaseId, now_ms: i64) -> Option<LeaseOutcome> {
        self.purge(now_ms);
        self.outcome(lease)
    }

    fn outcome(&self, lease: LeaseId) -> Option<LeaseOutcome> {
        if self.pending.contains_key(&lease) {
            return Some(LeaseOutcome::Pending);
        }
        self.decided
            .get(&lease)
            .map(|entry| entry.decided.outcome())
    }

    /// Marks `lease` as being decided, unless it is already known: then its outcome (as
    /// [`LeaseTable::get`] gives it) and nothing changes. An error, and nothing recorded, if
    /// the lease is new and every slot holds a lease in flight.
    #[cfg_attr(not(feature = "tigerbeetle"), allow(dead_code))]
    pub fn begin(&mut self, lease: LeaseId, now_ms: i64) -> Result<Begun, LeaseTableFull> {
        let capacity = self.capacity;
        self.begin_if(lease, now_ms, |in_flight| in_flight < capacity)
    }

    /// Like [`LeaseTable::begin`], with the bound on leases in flight decided by `fits`
    /// (given how many this table has in flight): for a table that is one part of a larger
    /// one, whose bound is the whole's.
    pub fn begin_if(
        &mut self,
        lease: LeaseId,
        now_ms: i64,
        fits: impl FnOnce(usize) -> bool,
    ) -> Result<Begun, LeaseTableFull> {
        self.purge(now_ms);
        if let Some(outcome) = self.outcome(lease) {
            return Ok(Begun::Known(outcome));
        }
        if !fits(self.in_flight()) {
            self.refused += 1;
            return Err(LeaseTableFull {
                capacity: self.capacity,
            });
        }
        let forget_at_ms = now_ms.saturating_add(PENDING_FORGET_MS);
        self.pending.insert(lease, forget_at_ms);
        self.pending_due_ms = self.pending_due_ms.min(forget_at_ms);
        Ok(Begun::New)
    }

    /// Records an allow; the lease stays in flight until its longest hold has passed or it
    /// completes. Never refused: the slot was claimed by [`LeaseTable::begin`] (a lease put
    /// back after a failed complete may briefly exceed the bound). A denied lease id can
    /// never be allowed (debug builds check it).
    pub fn allow(
        &mut self,
        lease: LeaseId,
        now_ms: i64,
        holds: impl Into<Holds>,
        longest_hold_ms: i64,
    ) {
        debug_assert!(
            !matches!(
                self.decided.get(&lease),
                Some(Entry {
                    decided: Decided::Denied { .. },
                    ..
                })
            ),
            "lease {lease} was denied and cannot be allowed"
        );
        self.pending.remove(&lease);
        let decided = Decided::Allowed {
            reserved_at_ms: now_ms,
            holds: holds.into(),
        };
        self.remember(
            lease,
            decided,
            now_ms,
            now_ms.saturating_add(longest_hold_ms),
        );
    }

    /// Records a denial; kept at least as long as the longest hold of the keys involved,
    /// unless newer settled leases push it out first. An allowed lease can never be denied
    /// afterwards (debug builds check it).
    pub fn deny(&mut self, lease: LeaseId, now_ms: i64, retry_after_ms: u64, longest_hold_ms: i64) {
        debug_assert!(
            !self
                .decided
                .get(&lease)
                .is_some_and(|entry| entry.decided.in_flight()),
            "lease {lease} was allowed and cannot be denied"
        );
        self.purge(now_ms);
        self.pending.remove(&lease);
        self.remember(
            lease,
            Decided::Denied { retry_after_ms },
            now_ms,
            now_ms.saturating_add(longest_hold_ms),
        );
    }

    /// Forgets a pending lease whose reserve failed for a reason other than capacity (e.g. a
    /// backend error), so that the client may retry it with the same id.
    pub fn abandon(&mut self, lease: LeaseId) {
        self.pending.remove(&lease);
    }

    /// For `complete`: the reserve time and holds of an allowed, not yet completed lease,
    /// which moves to the settled part. `None` for unknown, denied, pending or already
    /// completed leases (complete is a no-op).
    pub fn start_complete(&mut self, lease: LeaseId, now_ms: i64) -> Option<(i64, Holds)> {
        self.purge(now_ms);
        if self.settled >= self.capacity {
            // Room is made only for a lease that does settle now.
            if !self.decided.get(&lease)?.decided.in_flight() {
                return None;
            }
            self.make_room_to_settle();
        }
        let entry = self.decided.get_mut(&lease)?;
        if !entry.decided.in_flight() {
            return None;
        }
        let Decided::Allowed {
            reserved_at_ms,
            holds,
        } = std::mem::replace(&mut entry.decided, Decided::Denied { retry_after_ms: 0 })
        else {
            return None;
        };
        entry.decided = Decided::Completed { reserved_at_ms };
        self.allowed -= 1;
        self.settled += 1;
        self.settled_order.push(entry.forget_at_ms, lease);
        Some((reserved_at_ms, holds))
    }

    /// Every lease remembered at `now_ms` except those still being decided, for a snapshot.
    pub fn export(&mut self, now_ms: i64) -> Vec<LeaseRecord> {
        self.purge(now_ms);
        self.decided
            .iter()
            .map(|(&lease, entry)| {
                let forget_at_ms = entry.forget_at_ms;
                match &entry.decided {
                    Decided::Allowed {
                        reserved_at_ms,
                        holds,
                    } => LeaseRecord::Allowed {
                        lease,
                        reserved_at_ms: *reserved_at_ms,
                        forget_at_ms,
                        holds: std::sync::Arc::clone(holds),
                    },
                    Decided::Completed { reserved_at_ms } => LeaseRecord::Completed {
                        lease,
                        reserved_at_ms: *reserved_at_ms,
                        forget_at_ms,
                    },
                    Decided::Denied { retry_after_ms } => LeaseRecord::Denied {
                        lease,
                        retry_after_ms: *retry_after_ms,
                        forget_at_ms,
                    },
                }
            })
            .collect()
    }

    /// Remembers `records` (from [`LeaseTable::export`]) as of `now_ms`: those already due are
    /// skipped, a lease the table knows already is kept as it is. Allowed leases are taken in
    /// even beyond the table's bound (they hold capacity that `complete` must be able to
    /// release); settled ones obey the bound like any other. Returns how many were taken in.
    pub fn import(&mut self, records: Vec<LeaseRecord>, now_ms: i64) -> usize {
        self.purge(now_ms);
        let mut imported = 0;
        for record in records {
            let lease = record.lease();
            let forget_at_ms = record.forget_at_ms();
            if forget_at_ms <= now_ms || self.outcome(lease).is_some() {
                continue;
            }
            let decided = match record {
                LeaseRecord::Allowed {
                    reserved_at_ms,
                    holds,
                    ..
                } => Decided::Allowed {
                    reserved_at_ms,
                    holds,
                },
                LeaseRecord::Completed { reserved_at_ms, .. } => {
                    Decided::Completed { reserved_at_ms }
                }
                LeaseRecord::Denied { retry_after_ms, .. } => Decided::Denied { retry_after_ms },
            };
            self.remember(lease, decided, now_ms, forget_at_ms);
            imported += 1;
        }
        imported
    }

    /// Stores a decided lease at `now_ms` until `forget_at_ms`, replacing what was known of
    /// it. A settled one first makes room, forgetting the settled ones due soonest if full
    /// (callers purge first, so what is forgotten here had time left).
    fn remember(&mut self, lease: LeaseId, decided: Decided, now_ms: i64, forget_at_ms: i64) {
        if decided.in_flight() {
            self.allowed += 1;
            self.in_flight_order.push(forget_at_ms, lease);
        } else {
            self.make_room_to_settle();
            self.settled += 1;
            self.settled_order.push(forget_at_ms, lease);
        }
        let entry = Entry {
            decided,
            forget_at_ms,
        };
        // One lookup: what it replaces (a lease put back after a failed complete) is
        // uncounted afterwards.
        if let Some(old) = self.decided.insert(lease, entry, now_ms) {
            self.uncount(&old.decided);
        }
    }

    fn uncount(&mut self, decided: &Decided) {
        if decided.in_flight() {
            self.allowed -= 1;
        } else {
            self.settled -= 1;
        }
    }

    /// Forgets the settled leases due soonest until one more fits.
    fn make_room_to_settle(&mut self) {
        while self.settled >= self.capacity {
            let Some((at_ms, lease)) = self.settled_order.pop_soonest() else {
                break;
            };
            if self.forget_if_due(lease, at_ms, false) {
                self.settled_dropped += 1;
            }
        }
    }

    /// Forgets `lease` if its entry is still the one filed at `at_ms` in the order of its
    /// part (in flight or settled); an order keeps entries that no longer apply.
    fn forget_if_due(&mut self, lease: LeaseId, at_ms: i64, in_flight: bool) -> bool {
        let due =
            |entry: &Entry| entry.forget_at_ms == at_ms && entry.decided.in_flight() == in_flight;
        match self.decided.remove_if(&lease, due) {
            Some(entry) => {
                self.uncount(&entry.decided);
                true
            }
            None => false,
        }
    }

    fn purge(&mut self, now_ms: i64) {
        if now_ms >= self.pending_due_ms {
            self.pending.retain(|_, at_ms| *at_ms > now_ms);
            self.pending_due_ms = self.pending.values().copied().min().unwrap_or(i64::MAX);
        }
        while let Some((at_ms, lease)) = self.in_flight_order.pop_due(now_ms) {
            self.forget_if_due(lease, at_ms, true);
        }
        while let Some((at_ms, lease)) = self.settled_order.pop_due(now_ms) {
            self.forget_if_due(lease, at_ms, false);
        }
    }
}

#[cfg(test)]
mod tests;
