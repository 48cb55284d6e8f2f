//! [`ForgetOrder`]: lease ids by the time they may be forgotten, soonest first.
//!
//! Leases are grouped by millisecond: a busy table adds to the bucket of the current
//! millisecond plus a hold, which is found in a few steps down the right edge of the tree,
//! instead of a new tree entry per lease. Entries are never removed one by one: the owner
//! checks each one it pops against its own record and skips those that no longer apply (a
//! lease that moved on, or was forgotten already). Each lease is pushed at most once per
//! change of its state, so what is left over is bounded by the leases remembered.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use super::LeaseId;

/// Lease ids ordered by forget time (Unix ms); may hold entries the owner no longer uses.
#[derive(Debug, Default)]
pub(crate) struct ForgetOrder {
    buckets: BTreeMap<i64, SmallVec<[LeaseId; 1]>>,
}

impl ForgetOrder {
    /// Adds `lease`, to be forgotten at `at_ms`.
    pub(crate) fn push(&mut self, at_ms: i64, lease: LeaseId) {
        self.buckets.entry(at_ms).or_default().push(lease);
    }

    /// Takes out one lease due at or before `now_ms`, with its time.
    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<(i64, LeaseId)> {
        let mut bucket = self.buckets.first_entry()?;
        let at_ms = *bucket.key();
        if at_ms > now_ms {
            return None;
        }
        let lease = bucket.get_mut().pop();
        if bucket.get().is_empty() {
            bucket.remove();
        }
        lease.map(|lease| (at_ms, lease))
    }

    /// Takes out one of the leases due soonest, with its time.
    pub(crate) fn pop_soonest(&mut self) -> Option<(i64, LeaseId)> {
        self.pop_due(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_come_out_soonest_first_and_only_when_due() {
        let mut order = ForgetOrder::default();
        let ids: Vec<LeaseId> = (0..4).map(|_| LeaseId::new()).collect();
        order.push(30, ids[0]);
        order.push(10, ids[1]);
        order.push(20, ids[2]);
        order.push(10, ids[3]);
        assert_eq!(order.pop_due(9), None);
        let mut due: Vec<_> = std::iter::from_fn(|| order.pop_due(10)).collect();
        due.sort();
        let mut expected = vec![(10, ids[1]), (10, ids[3])];
        expected.sort();
        assert_eq!(due, expected);
        assert_eq!(order.pop_soonest(), Some((20, ids[2])));
        assert_eq!(order.pop_due(i64::MAX), Some((30, ids[0])));
        assert_eq!(order.pop_soonest(), None);
    }
}
