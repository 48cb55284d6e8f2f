//! [`ForgetOrder`]: lease ids by the time they may be forgotten, soonest first.
//!
//! Leases are grouped by millisecond: a busy table adds to the bucket of the current
//! millisecond plus a hold, kept apart from the tree while it is the latest, instead of a
//! new tree entry per lease. Entries are never removed one by one: the owner
//! checks each one it pops against its own record and skips those that no longer apply (a
//! lease that moved on, or was forgotten already). Each lease is pushed at most once per
//! change of its state, so what is left over is bounded by the leases remembered.

use std::collections::BTreeMap;

use smallvec::{smallvec, SmallVec};

use super::LeaseId;

/// Lease ids ordered by forget time (Unix ms); may hold entries the owner no longer uses.
#[derive(Debug, Default)]
pub(crate) struct ForgetOrder {
    buckets: BTreeMap<i64, SmallVec<[LeaseId; 1]>>,
    /// The latest bucket pushed to, kept apart while it is the last one: most pushes go
    /// there (the same millisecond plus the same hold), without a walk down the tree.
    latest: Option<(i64, SmallVec<[LeaseId; 1]>)>,
}

impl ForgetOrder {
    /// Adds `lease`, to be forgotten at `at_ms`.
    pub(crate) fn push(&mut self, at_ms: i64, lease: LeaseId) {
        if let Some((latest_ms, leases)) = &mut self.latest {
            if *latest_ms == at_ms {
                leases.push(lease);
                return;
            }
        }
        // Later than every bucket: the new latest (the previous one joins the tree).
        let latest = self.latest.as_ref().map_or(true, |(ms, _)| *ms < at_ms)
            && self
                .buckets
                .last_key_value()
                .map_or(true, |(ms, _)| *ms < at_ms);
        if latest {
            if let Some((ms, leases)) = self.latest.replace((at_ms, smallvec![lease])) {
                self.file(ms, leases);
            }
        } else {
            self.buckets.entry(at_ms).or_default().push(lease);
        }
    }

    /// Puts a bucket into the tree, joining one of the same time.
    fn file(&mut self, at_ms: i64, leases: SmallVec<[LeaseId; 1]>) {
        match self.buckets.entry(at_ms) {
            std::collections::btree_map::Entry::Vacant(vacant) => {
                vacant.insert(leases);
            }
            std::collections::btree_map::Entry::Occupied(mut occupied) => {
                occupied.get_mut().extend(leases)
            }
        }
    }

    /// Takes out one lease due at or before `now_ms`, with its time.
    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<(i64, LeaseId)> {
        // The latest bucket is due last: taken from once the tree has nothing left.
        if self.buckets.is_empty() {
            let (at_ms, leases) = self.latest.as_mut()?;
            if *at_ms > now_ms {
                return None;
            }
            let at_ms = *at_ms;
            let lease = leases.pop();
            if leases.is_empty() {
                self.latest = None;
            }
            return lease.map(|lease| (at_ms, lease));
        }
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

    #[test]
    fn later_earlier_and_equal_times_around_the_latest_bucket_keep_their_order() {
        let mut order = ForgetOrder::default();
        let ids: Vec<LeaseId> = (0..6).map(|_| LeaseId::new()).collect();
        for (at, id) in [(50, 0), (50, 1), (20, 2), (70, 3), (50, 4), (70, 5)] {
            order.push(at, ids[id]);
        }
        let popped: Vec<_> = std::iter::from_fn(|| order.pop_soonest()).collect();
        let times: Vec<i64> = popped.iter().map(|(at, _)| *at).collect();
        assert_eq!(times, [20, 50, 50, 50, 70, 70]);
        let mut leases: Vec<_> = popped.iter().map(|(_, id)| *id).collect();
        leases.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(leases, expected);
        assert_eq!(order.pop_due(i64::MAX), None);
        // After the latest bucket went to the tree, an earlier time still comes out first.
        order.push(9, ids[1]);
        assert_eq!(order.pop_due(8), None);
        order.push(7, ids[2]);
        assert_eq!(order.pop_soonest(), Some((7, ids[2])));
        assert_eq!(order.pop_soonest(), Some((9, ids[1])));
        order.push(5, ids[0]);
        assert_eq!(order.pop_due(4), None);
        assert_eq!(order.pop_due(5), Some((5, ids[0])));
    }

    proptest::proptest! {
        #[test]
        fn pops_the_soonest_due_like_a_sorted_list(
            steps in proptest::collection::vec((proptest::bool::ANY, 0i64..40), 1..200)
        ) {
            let mut order = ForgetOrder::default();
            let mut model: Vec<(i64, LeaseId)> = Vec::new();
            for (push, at) in steps {
                if push {
                    let lease = LeaseId::new();
                    order.push(at, lease);
                    model.push((at, lease));
                    continue;
                }
                let soonest = model.iter().map(|(t, _)| *t).min();
                match order.pop_due(at) {
                    Some((t, lease)) => {
                        proptest::prop_assert_eq!(Some(t), soonest);
                        proptest::prop_assert!(t <= at);
                        let index = model.iter().position(|e| *e == (t, lease));
                        proptest::prop_assert!(index.is_some(), "{:?} was not pushed", (t, lease));
                        model.swap_remove(index.unwrap_or_default());
                    }
                    None => proptest::prop_assert!(soonest.map_or(true, |t| t > at)),
                }
            }
        }
    }
}
