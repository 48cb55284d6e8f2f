//! [`ForgetOrder`]: lease ids by the time they may be forgotten, soonest first.
//!
//! A busy table forgets each lease at the current millisecond plus a hold, so nearly every
//! push is at or after the latest one: those go to the back of a queue kept in fixed-size
//! chunks (no per-lease node, no copy of what is queued when it grows, and a chunk's memory
//! is given back once it is used up). A push earlier than the queue's back (a shorter hold
//! than the last lease's) goes to a tree instead; the soonest of the two fronts comes out
//! first. Entries are never removed one by one: the owner checks each one it pops against
//! its own record and skips those that no longer apply (a lease that moved on, or was
//! forgotten already). Each lease is pushed at most once per change of its state, so what
//! is left over is bounded by the leases remembered.

use std::collections::{BTreeMap, VecDeque};

use smallvec::SmallVec;

use super::LeaseId;

/// Entries per chunk of the in-order queue (24 bytes each: 6 KiB a chunk); tests use small
/// chunks so that their few pushes cross chunk boundaries.
#[cfg(not(test))]
const CHUNK: usize = 256;
#[cfg(test)]
const CHUNK: usize = 4;

/// Lease ids ordered by forget time (Unix ms); may hold entries the owner no longer uses.
#[derive(Debug, Default)]
pub(crate) struct ForgetOrder {
    /// Pushes in nondecreasing time order, in chunks of [`CHUNK`]; the front chunk's first
    /// `front_taken` entries are popped already.
    in_order: VecDeque<Vec<(i64, LeaseId)>>,
    front_taken: usize,
    /// Pushes earlier than the queue's back, by time.
    earlier: BTreeMap<i64, SmallVec<[LeaseId; 1]>>,
}

impl ForgetOrder {
    /// Adds `lease`, to be forgotten at `at_ms`.
    pub(crate) fn push(&mut self, at_ms: i64, lease: LeaseId) {
        let back = self.in_order.back_mut();
        match back {
            Some(chunk) if chunk.last().is_some_and(|&(last, _)| last > at_ms) => {
                self.earlier.entry(at_ms).or_default().push(lease);
            }
            Some(chunk) if chunk.len() < CHUNK => chunk.push((at_ms, lease)),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push((at_ms, lease));
                self.in_order.push_back(chunk);
            }
        }
    }

    /// The time of the queue's front entry.
    fn in_order_front(&self) -> Option<i64> {
        let chunk = self.in_order.front()?;
        chunk.get(self.front_taken).map(|&(at_ms, _)| at_ms)
    }

    /// Takes out the queue's front entry.
    fn pop_in_order(&mut self) -> Option<(i64, LeaseId)> {
        let chunk = self.in_order.front()?;
        let entry = *chunk.get(self.front_taken)?;
        self.front_taken += 1;
        // A used-up chunk goes, unless it is the back one still being filled.
        if self.front_taken == chunk.len() && (chunk.len() == CHUNK || self.in_order.len() > 1) {
            self.in_order.pop_front();
            self.front_taken = 0;
        }
        Some(entry)
    }

    /// Takes out one lease due at or before `now_ms`, with its time.
    pub(crate) fn pop_due(&mut self, now_ms: i64) -> Option<(i64, LeaseId)> {
        let queued = self.in_order_front();
        let earlier = self.earlier.first_key_value().map(|(&at_ms, _)| at_ms);
        match (queued, earlier) {
            (Some(q), e) if q <= now_ms && e.map_or(true, |e| q <= e) => self.pop_in_order(),
            (_, Some(e)) if e <= now_ms => {
                let mut bucket = self.earlier.first_entry()?;
                let lease = bucket.get_mut().pop();
                if bucket.get().is_empty() {
                    bucket.remove();
                }
                lease.map(|lease| (e, lease))
            }
            _ => None,
        }
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
    fn later_earlier_and_equal_times_around_the_queue_back_keep_their_order() {
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
        // Earlier than the queue's back: still comes out first.
        order.push(9, ids[1]);
        assert_eq!(order.pop_due(8), None);
        order.push(7, ids[2]);
        assert_eq!(order.pop_soonest(), Some((7, ids[2])));
        assert_eq!(order.pop_soonest(), Some((9, ids[1])));
        order.push(5, ids[0]);
        assert_eq!(order.pop_due(4), None);
        assert_eq!(order.pop_due(5), Some((5, ids[0])));
    }

    /// Runs `steps` (push at a time, or pop what is due at a time) against a plain list.
    fn matches_a_sorted_list(
        steps: &[(bool, i64)],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut order = ForgetOrder::default();
        let mut model: Vec<(i64, LeaseId)> = Vec::new();
        for &(push, at) in steps {
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
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn pops_the_soonest_due_like_a_sorted_list(
            steps in proptest::collection::vec((proptest::bool::ANY, 0i64..40), 1..200)
        ) {
            matches_a_sorted_list(&steps)?;
        }

        /// As a busy table pushes: mostly at or after the last push, now and then earlier.
        #[test]
        fn pops_the_soonest_due_like_a_sorted_list_when_pushes_are_mostly_in_order(
            steps in proptest::collection::vec(
                (proptest::bool::weighted(0.7), 0i64..3, proptest::bool::weighted(0.1)),
                1..300,
            )
        ) {
            let mut clock = 0;
            let steps: Vec<(bool, i64)> = steps
                .into_iter()
                .map(|(push, advance, earlier)| {
                    clock += advance;
                    (push, if earlier { clock - 5 } else { clock })
                })
                .collect();
            matches_a_sorted_list(&steps)?;
        }
    }
}
