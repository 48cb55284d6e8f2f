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
    /// Which of the memory backend's shards owns the key (so `complete` goes straight
    /// there); not saved, like `place`.
    #[serde(skip)]
    pub shard: Option<u16>,
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
/// One map holds every decided lease, so a reserve and its complete find their lease with
/// one lookup each: `complete` turns the entry from allowed to completed in place, keeping
/// its forget time. Leases being decided are few at any time (a reserve is decided within
/// microseconds) and are kept apart, forgotten by a scan of that small map at most once per
/// [`PENDING_FORGET_MS`].
#[derive(Debug)]
pub struct LeaseTable {
    /// Leases being decided, with when each is forgotten should its owner never decide it.
    pending: HashMap<LeaseId, i64>,
    /// No pending lease is due before this time.
    pending_due_ms: i64,
    decided: HashMap<LeaseId, Entry>,
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
            decided: HashMap::new(),
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
        self.remember(lease, decided, now_ms.saturating_add(longest_hold_ms));
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
        if !self.decided.get(&lease)?.decided.in_flight() {
            return None;
        }
        self.make_room_to_settle();
        let entry = self.decided.get_mut(&lease)?;
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
            self.remember(lease, decided, forget_at_ms);
            imported += 1;
        }
        imported
    }

    /// Stores a decided lease until `forget_at_ms`, replacing what was known of it. A settled
    /// one first makes room, forgetting the settled ones due soonest if full (callers purge
    /// first, so what is forgotten here had time left).
    fn remember(&mut self, lease: LeaseId, decided: Decided, forget_at_ms: i64) {
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
        if let Some(old) = self.decided.insert(lease, entry) {
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
        match self.decided.get(&lease) {
            Some(entry)
                if entry.forget_at_ms == at_ms && entry.decided.in_flight() == in_flight => {}
            _ => return false,
        }
        if let Some(entry) = self.decided.remove(&lease) {
            self.uncount(&entry.decided);
        }
        true
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
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MINUTE;

    fn hold(key: &str, kind: LimitKind) -> Hold {
        Hold {
            key: key.into(),
            amount: 1,
            kind,
            hold_ms: MINUTE,
            place: None,
            shard: None,
        }
    }

    /// A lease begun and allowed at `now_ms` with one hold of `hold_ms`.
    fn allowed(table: &mut LeaseTable, now_ms: i64, kind: LimitKind, hold_ms: i64) -> LeaseId {
        let lease = LeaseId::new();
        assert_eq!(table.begin(lease, now_ms), Ok(Begun::New));
        table.allow(lease, now_ms, vec![hold("k", kind)], hold_ms);
        lease
    }

    #[test]
    fn allowed_lease_completes_once() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        assert_eq!(table.begin(lease, 0), Ok(Begun::New));
        assert_eq!(
            table.begin(lease, 0),
            Ok(Begun::Known(LeaseOutcome::Pending))
        );
        assert_eq!(table.get(lease, 0), Some(LeaseOutcome::Pending));
        table.allow(lease, 0, vec![hold("a", LimitKind::Rolling)], MINUTE);
        assert_eq!(
            table.start_complete(lease, 1),
            Some((0, Holds::from(vec![hold("a", LimitKind::Rolling)])))
        );
        assert!(table.start_complete(lease, 2).is_none());
        assert_eq!(
            table.get(lease, 3),
            Some(LeaseOutcome::Allowed {
                reserved_at_ms: 0,
                completed: true
            })
        );
        assert_eq!((table.in_flight(), table.len()), (0, 1));
        assert_eq!(
            table.begin(lease, 4),
            Ok(Begun::Known(LeaseOutcome::Allowed {
                reserved_at_ms: 0,
                completed: true
            })),
            "a completed id stays known"
        );
        assert_eq!(
            table.get(lease, MINUTE),
            None,
            "forgotten once its hold passed"
        );
    }

    #[test]
    fn denied_lease_is_remembered_for_the_longest_hold() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        assert_eq!(table.begin(lease, 0), Ok(Begun::New));
        table.deny(lease, 0, 123, MINUTE);
        assert_eq!(
            table.get(lease, MINUTE - 1),
            Some(LeaseOutcome::Denied {
                retry_after_ms: 123
            })
        );
        assert_eq!(table.in_flight(), 0, "a denial frees its slot in flight");
        assert!(table.start_complete(lease, MINUTE - 1).is_none());
        assert_eq!(table.get(lease, MINUTE), None);
        assert!(table.is_empty());
    }

    #[test]
    fn abandon_forgets_only_pending() {
        let mut table = LeaseTable::default();
        let (a, b, c) = (LeaseId::new(), LeaseId::new(), LeaseId::new());
        assert_eq!(table.begin(a, 0), Ok(Begun::New));
        table.abandon(a);
        assert!(table.get(a, 0).is_none());
        table.deny(b, 0, 1, 1000);
        table.abandon(b);
        assert!(table.get(b, 0).is_some());
        assert_eq!(table.begin(c, 0), Ok(Begun::New));
        table.allow(c, 0, vec![], 1000);
        table.abandon(c);
        assert!(table.get(c, 0).is_some());
    }

    #[test]
    #[should_panic(expected = "was allowed and cannot be denied")]
    fn an_allowed_lease_cannot_turn_denied() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        assert_eq!(table.begin(lease, 0), Ok(Begun::New));
        table.allow(lease, 0, vec![hold("a", LimitKind::Rolling)], 60_000);
        table.deny(lease, 1, 5, 60_000);
    }

    #[test]
    #[should_panic(expected = "was denied and cannot be allowed")]
    fn a_denied_lease_cannot_turn_allowed() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        assert_eq!(table.begin(lease, 0), Ok(Begun::New));
        table.deny(lease, 0, 5, 60_000);
        table.allow(lease, 1, vec![hold("a", LimitKind::Rolling)], 60_000);
    }

    #[test]
    fn settled_leases_have_their_own_bound_and_the_soonest_due_go_first() {
        let mut table = LeaseTable::new(2);
        let leases: Vec<_> = (0..3).map(|_| LeaseId::new()).collect();
        table.deny(leases[0], 0, 1, 100);
        table.deny(leases[1], 0, 1, 50);
        table.deny(leases[2], 0, 1, 200);
        assert_eq!(table.len(), 2);
        assert_eq!(table.settled_dropped(), 1);
        assert!(table.get(leases[1], 0).is_none());
        assert!(table.get(leases[0], 0).is_some());
        // Settled leases never take a slot in flight.
        allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
        allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
        assert_eq!((table.in_flight(), table.len()), (2, 4));
        // Expired settled leases are purged, not counted as dropped.
        table.deny(LeaseId::new(), 300, 1, 100);
        assert_eq!(table.settled_dropped(), 1);
    }

    #[test]
    fn a_denial_storm_never_forgets_a_lease_in_flight() {
        let mut table = LeaseTable::new(3);
        let inflight = allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
        let daily = allowed(&mut table, 0, LimitKind::Rolling, DAY);
        let storm: Vec<_> = (0..100).map(|_| LeaseId::new()).collect();
        for (i, lease) in storm.iter().enumerate() {
            let now = i as i64;
            assert_eq!(
                table.begin(*lease, now),
                Ok(Begun::New),
                "denial {i} is decided"
            );
            table.deny(*lease, now, 7, DAY);
        }
        assert_eq!(table.settled_dropped(), 97);
        // The oldest denials went first; the newest are still denied.
        assert_eq!(table.get(storm[0], 100), None);
        for lease in &storm[97..] {
            assert_eq!(
                table.get(*lease, 100),
                Some(LeaseOutcome::Denied { retry_after_ms: 7 })
            );
        }
        assert_eq!(
            table.start_complete(inflight, 100),
            Some((0, Holds::from(vec![hold("k", LimitKind::Concurrency)]))),
            "the concurrency hold is still there to release"
        );
        assert!(table.start_complete(daily, 100).is_some());
        assert_eq!(table.refused(), 0);
    }

    #[test]
    fn a_table_full_of_leases_in_flight_refuses_until_one_completes_or_expires() {
        let mut table = LeaseTable::new(2);
        let first = allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
        let pending = LeaseId::new();
        assert_eq!(
            table.begin(pending, 0),
            Ok(Begun::New),
            "pending counts as in flight"
        );
        let refused = LeaseId::new();
        let full = LeaseTableFull { capacity: 2 };
        assert_eq!(table.begin(refused, 1), Err(full));
        assert_eq!(table.get(refused, 1), None, "a refusal records nothing");
        assert_eq!(
            table.begin(first, 1),
            Ok(Begun::Known(LeaseOutcome::Allowed {
                reserved_at_ms: 0,
                completed: false
            })),
            "known leases are not refused"
        );
        assert!(table.start_complete(first, 2).is_some());
        assert_eq!(
            table.begin(refused, 2),
            Ok(Begun::New),
            "a complete frees a slot"
        );
        table.allow(refused, 2, vec![hold("k", LimitKind::Concurrency)], MINUTE);
        assert_eq!(table.begin(LeaseId::new(), 3), Err(full));
        assert_eq!(table.refused(), 2);
        // The pending entry is forgotten after its own bound, the allowed one after its hold.
        assert_eq!(table.begin(LeaseId::new(), MINUTE + 1), Err(full));
        assert_eq!(table.begin(LeaseId::new(), MINUTE + 2), Ok(Begun::New));
        assert_eq!(
            table.begin(LeaseId::new(), PENDING_FORGET_MS),
            Ok(Begun::New)
        );
        let message = full.to_string();
        for needle in [
            "--lease-capacity",
            "lease_capacity",
            "RATELIMITERD_LEASE_CAPACITY",
        ] {
            assert!(message.contains(needle), "{message}");
        }
    }

    #[test]
    fn a_lease_put_back_after_a_failed_complete_can_complete_again() {
        let mut table = LeaseTable::new(1);
        let lease = allowed(&mut table, 0, LimitKind::Rolling, MINUTE);
        let (reserved_at, holds) = table.start_complete(lease, 1).unwrap();
        assert_eq!(table.in_flight(), 0);
        table.allow(lease, reserved_at, holds.clone(), MINUTE);
        assert_eq!((table.in_flight(), table.len()), (1, 1));
        assert_eq!(table.start_complete(lease, 2), Some((reserved_at, holds)));
    }

    #[test]
    fn export_and_import_carry_every_settled_and_allowed_lease_but_not_pending_ones() {
        let mut table = LeaseTable::new(10);
        let open = allowed(&mut table, 0, LimitKind::Concurrency, MINUTE);
        let done = allowed(&mut table, 0, LimitKind::Rolling, MINUTE);
        table.start_complete(done, 1).unwrap();
        let refused = LeaseId::new();
        table.begin(refused, 1).unwrap();
        table.deny(refused, 1, 250, DAY);
        let deciding = LeaseId::new();
        table.begin(deciding, 2).unwrap();
        let records = table.export(2);
        assert_eq!(records.len(), 3, "{records:?}");
        let json = serde_json::to_string(&records).unwrap();
        let records: Vec<LeaseRecord> = serde_json::from_str(&json).unwrap();

        let mut restored = LeaseTable::new(10);
        assert_eq!(restored.import(records.clone(), 3), 3);
        assert_eq!(
            restored.import(records.clone(), 3),
            0,
            "known leases are kept"
        );
        assert_eq!(restored.get(deciding, 3), None);
        assert_eq!(
            restored.get(refused, 3),
            Some(LeaseOutcome::Denied {
                retry_after_ms: 250
            })
        );
        assert_eq!(
            restored.start_complete(open, 3),
            Some((0, Holds::from(vec![hold("k", LimitKind::Concurrency)])))
        );
        assert!(restored.start_complete(done, 3).is_none(), "completed once");
        // Due entries are dropped at import: past a minute only the denial is left.
        let mut later = LeaseTable::new(10);
        assert_eq!(later.import(records, MINUTE), 1);
        assert!(later.get(refused, MINUTE).is_some());
    }
}
