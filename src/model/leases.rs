//! The lease table: what each reserve attempt ended as, so that a repeated reserve is
//! idempotent, a denied lease id stays denied, and `complete` knows what to release.
//!
//! Lease metadata lives in memory only (SPEC §4 "Complete" 3). Memory is bounded twice: every
//! entry is forgotten once the longest hold of its keys has passed (after that its
//! reservations have expired anyway), and a hard cap evicts the entries due soonest.

use std::collections::{BTreeSet, HashMap};

use super::definition::LimitKind;
use super::LeaseId;

/// Capacity one allowed lease holds on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The limit key.
    pub key: String,
    /// Units reserved.
    pub amount: u64,
    /// The key's kind at reserve time.
    pub kind: LimitKind,
}

/// What a reserve attempt ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The reserve is being decided right now.
    Pending,
    /// Allowed; `completed` turns true on the first complete.
    Allowed {
        /// When it was reserved (Unix ms).
        reserved_at_ms: i64,
        /// What it holds, per key.
        holds: Vec<Hold>,
        /// Whether `complete` already ran.
        completed: bool,
    },
    /// Denied; the lease id can never be allowed.
    Denied {
        /// The hint given at the denial, repeated to a client that retries the same id.
        retry_after_ms: u64,
    },
}

#[derive(Debug)]
struct Entry {
    outcome: LeaseOutcome,
    forget_at_ms: i64,
}

/// Default bound on remembered leases.
pub const DEFAULT_MAX_LEASES: usize = 1_000_000;

/// How long a pending entry is kept at most, should its owner never settle it.
const PENDING_FORGET_MS: i64 = 10 * 60 * 1000;

/// Remembered reserve outcomes, bounded in time and in count.
#[derive(Debug)]
pub struct LeaseTable {
    entries: HashMap<LeaseId, Entry>,
    by_forget_time: BTreeSet<(i64, LeaseId)>,
    max_entries: usize,
    evicted_early: u64,
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable::new(DEFAULT_MAX_LEASES)
    }
}

impl LeaseTable {
    /// An empty table remembering at most `max_entries` leases.
    pub fn new(max_entries: usize) -> Self {
        LeaseTable {
            entries: HashMap::new(),
            by_forget_time: BTreeSet::new(),
            max_entries: max_entries.max(1),
            evicted_early: 0,
        }
    }

    /// Number of remembered leases.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries the count cap evicted before their time (a sign the cap is too low).
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// The outcome remembered for `lease`, after forgetting what is due at `now_ms`.
    pub fn get(&mut self, lease: LeaseId, now_ms: i64) -> Option<&LeaseOutcome> {
        self.purge(now_ms);
        self.entries.get(&lease).map(|e| &e.outcome)
    }

    /// Marks `lease` as being decided. Returns false if the lease is already known.
    pub fn begin(&mut self, lease: LeaseId, now_ms: i64) -> bool {
        self.purge(now_ms);
        if self.entries.contains_key(&lease) {
            return false;
        }
        self.insert(
            lease,
            LeaseOutcome::Pending,
            now_ms.saturating_add(PENDING_FORGET_MS),
        );
        true
    }

    /// Records an allow; the entry is kept until the longest hold has passed. A denied lease
    /// id can never be allowed (debug builds check it).
    pub fn allow(&mut self, lease: LeaseId, now_ms: i64, holds: Vec<Hold>, longest_hold_ms: i64) {
        debug_assert!(
            !matches!(
                self.entries.get(&lease).map(|e| &e.outcome),
                Some(LeaseOutcome::Denied { .. })
            ),
            "lease {lease} was denied and cannot be allowed"
        );
        let outcome = LeaseOutcome::Allowed {
            reserved_at_ms: now_ms,
            holds,
            completed: false,
        };
        self.insert(lease, outcome, now_ms.saturating_add(longest_hold_ms));
    }

    /// Records a denial; kept at least as long as the longest hold of the keys involved. An
    /// allowed lease can never be denied afterwards (debug builds check it).
    pub fn deny(&mut self, lease: LeaseId, now_ms: i64, retry_after_ms: u64, longest_hold_ms: i64) {
        debug_assert!(
            !matches!(
                self.entries.get(&lease).map(|e| &e.outcome),
                Some(LeaseOutcome::Allowed { .. })
            ),
            "lease {lease} was allowed and cannot be denied"
        );
        let outcome = LeaseOutcome::Denied { retry_after_ms };
        self.insert(lease, outcome, now_ms.saturating_add(longest_hold_ms));
    }

    /// Forgets a pending lease whose reserve failed for a reason other than capacity (e.g. a
    /// backend error), so that the client may retry it with the same id.
    pub fn abandon(&mut self, lease: LeaseId) {
        if let Some(entry) = self.entries.get(&lease) {
            if entry.outcome == LeaseOutcome::Pending {
                self.remove(lease);
            }
        }
    }

    /// For `complete`: the holds of an allowed, not yet completed lease, marking it completed.
    /// `None` for unknown, denied, pending or already completed leases (complete is a no-op).
    pub fn start_complete(&mut self, lease: LeaseId, now_ms: i64) -> Option<(i64, Vec<Hold>)> {
        self.purge(now_ms);
        match self.entries.get_mut(&lease).map(|e| &mut e.outcome) {
            Some(LeaseOutcome::Allowed {
                reserved_at_ms,
                holds,
                completed,
            }) if !*completed => {
                *completed = true;
                Some((*reserved_at_ms, holds.clone()))
            }
            _ => None,
        }
    }

    fn insert(&mut self, lease: LeaseId, outcome: LeaseOutcome, forget_at_ms: i64) {
        self.remove(lease);
        while self.entries.len() >= self.max_entries {
            let Some(&(at, oldest)) = self.by_forget_time.iter().next() else {
                break;
            };
            self.by_forget_time.remove(&(at, oldest));
            self.entries.remove(&oldest);
            self.evicted_early += 1;
        }
        self.entries.insert(
            lease,
            Entry {
                outcome,
                forget_at_ms,
            },
        );
        self.by_forget_time.insert((forget_at_ms, lease));
    }

    fn remove(&mut self, lease: LeaseId) {
        if let Some(old) = self.entries.remove(&lease) {
            self.by_forget_time.remove(&(old.forget_at_ms, lease));
        }
    }

    fn purge(&mut self, now_ms: i64) {
        while let Some(&(at, lease)) = self.by_forget_time.iter().next() {
            if at > now_ms {
                break;
            }
            self.by_forget_time.remove(&(at, lease));
            self.entries.remove(&lease);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(key: &str) -> Hold {
        Hold {
            key: key.into(),
            amount: 1,
            kind: LimitKind::Rolling,
        }
    }

    #[test]
    fn allowed_lease_completes_once() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        assert!(table.begin(lease, 0));
        assert!(!table.begin(lease, 0));
        table.allow(lease, 0, vec![hold("a")], 60_000);
        assert_eq!(table.start_complete(lease, 1).unwrap().1, vec![hold("a")]);
        assert!(table.start_complete(lease, 2).is_none());
        assert!(matches!(
            table.get(lease, 3),
            Some(LeaseOutcome::Allowed {
                completed: true,
                ..
            })
        ));
    }

    #[test]
    fn denied_lease_is_remembered_for_the_longest_hold() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        table.begin(lease, 0);
        table.deny(lease, 0, 123, 60_000);
        assert_eq!(
            table.get(lease, 59_999),
            Some(&LeaseOutcome::Denied {
                retry_after_ms: 123
            })
        );
        assert!(table.start_complete(lease, 59_999).is_none());
        assert_eq!(table.get(lease, 60_000), None);
        assert!(table.is_empty());
    }

    #[test]
    fn abandon_forgets_only_pending() {
        let mut table = LeaseTable::default();
        let (a, b) = (LeaseId::new(), LeaseId::new());
        table.begin(a, 0);
        table.abandon(a);
        assert!(table.get(a, 0).is_none());
        table.deny(b, 0, 1, 1000);
        table.abandon(b);
        assert!(table.get(b, 0).is_some());
    }

    #[test]
    #[should_panic(expected = "was allowed and cannot be denied")]
    fn an_allowed_lease_cannot_turn_denied() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        assert!(table.begin(lease, 0));
        table.allow(lease, 0, vec![hold("a")], 60_000);
        table.deny(lease, 1, 5, 60_000);
    }

    #[test]
    #[should_panic(expected = "was denied and cannot be allowed")]
    fn a_denied_lease_cannot_turn_allowed() {
        let mut table = LeaseTable::default();
        let lease = LeaseId::new();
        assert!(table.begin(lease, 0));
        table.deny(lease, 0, 5, 60_000);
        table.allow(lease, 1, vec![hold("a")], 60_000);
    }

    #[test]
    fn count_cap_evicts_the_soonest_due() {
        let mut table = LeaseTable::new(2);
        let leases: Vec<_> = (0..3).map(|_| LeaseId::new()).collect();
        table.deny(leases[0], 0, 1, 100);
        table.deny(leases[1], 0, 1, 50);
        table.deny(leases[2], 0, 1, 200);
        assert_eq!(table.len(), 2);
        assert_eq!(table.evicted_early(), 1);
        assert!(table.get(leases[1], 0).is_none());
        assert!(table.get(leases[0], 0).is_some());
    }
}
