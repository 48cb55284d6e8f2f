//! [`ExpiringMap`]: values by lease id, each with the time it may be forgotten, ordered by
//! that time so that what is due, or due soonest, is found in O(log n).

use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt};

use super::LeaseId;

/// Values keyed by lease id, each forgotten at its own time (Unix ms).
#[derive(Debug)]
pub(crate) struct ExpiringMap<V> {
    entries: HashMap<LeaseId, (V, i64)>,
    by_forget_time: BTreeSet<(i64, LeaseId)>,
}

impl<V> Default for ExpiringMap<V> {
    fn default() -> Self {
        ExpiringMap {
            entries: HashMap::new(),
            by_forget_time: BTreeSet::new(),
        }
    }
}

impl<V> ExpiringMap<V> {
    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `lease` has a value.
    pub(crate) fn contains(&self, lease: &LeaseId) -> bool {
        self.entries.contains_key(lease)
    }

    /// The value of `lease`.
    pub(crate) fn get(&self, lease: &LeaseId) -> Option<&V> {
        self.entries.get(lease).map(|(value, _)| value)
    }

    /// Stores `value` for `lease` until `forget_at_ms`, replacing any earlier value.
    pub(crate) fn insert(&mut self, lease: LeaseId, value: V, forget_at_ms: i64) {
        // One lookup: the value it replaces (if any) names the forget time to drop.
        if let Some((_, old_at)) = self.entries.insert(lease, (value, forget_at_ms)) {
            self.by_forget_time.remove(&(old_at, lease));
        }
        self.by_forget_time.insert((forget_at_ms, lease));
    }

    /// Removes `lease`, returning its value and forget time.
    pub(crate) fn remove(&mut self, lease: &LeaseId) -> Option<(V, i64)> {
        let (value, at) = self.entries.remove(lease)?;
        self.by_forget_time.remove(&(at, *lease));
        Some((value, at))
    }

    /// Removes the value due soonest.
    pub(crate) fn pop_soonest(&mut self) -> Option<(LeaseId, V)> {
        let (_, lease) = self.by_forget_time.pop_first()?;
        self.entries.remove(&lease).map(|(value, _)| (lease, value))
    }

    /// Every value with its lease and forget time, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (LeaseId, &V, i64)> + '_ {
        self.entries
            .iter()
            .map(|(lease, (value, at))| (*lease, value, *at))
    }

    /// Forgets every value due at or before `now_ms`; returns how many.
    pub(crate) fn purge(&mut self, now_ms: i64) -> usize {
        let mut purged = 0;
        while let Some(&(at, _)) = self.by_forget_time.first() {
            if at > now_ms {
                break;
            }
            self.pop_soonest();
            purged += 1;
        }
        purged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_forgets_what_is_due_and_pop_takes_the_soonest() {
        let mut map = ExpiringMap::default();
        let ids: Vec<LeaseId> = (0..4).map(|_| LeaseId::new()).collect();
        map.insert(ids[0], "a", 30);
        map.insert(ids[1], "b", 10);
        map.insert(ids[2], "c", 20);
        map.insert(ids[3], "d", 40);
        // Replacing a value moves it to its new forget time.
        map.insert(ids[3], "d2", 5);
        assert_eq!(map.len(), 4);
        assert_eq!(map.get(&ids[3]), Some(&"d2"));
        assert_eq!(map.purge(10), 2);
        assert!(!map.contains(&ids[3]) && !map.contains(&ids[1]));
        assert_eq!(map.pop_soonest(), Some((ids[2], "c")));
        assert_eq!(map.remove(&ids[0]), Some(("a", 30)));
        assert_eq!(map.len(), 0);
        assert_eq!(map.pop_soonest(), None);
        assert_eq!(map.purge(i64::MAX), 0);
    }
}
