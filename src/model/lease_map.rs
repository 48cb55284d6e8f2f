//! [`LeaseMap`]: decided leases by id, grouped by the time written in the id.
//!
//! A lease id is a ULID: its first 48 bits are the millisecond it was made. A busy table
//! looks up and adds leases made in the last moments far more than any other, so the map is
//! cut into parts by that time ([`PART_MS`] each): the part of the current moment is small
//! enough to stay in the processor's caches, where one map of millions of leases scatters
//! every new lease to a cold line of memory, and a part grows (rehashes) in small steps
//! instead of a whole table at once. Which part a lease is in follows from its id alone.
//!
//! An id whose time is far from the clock when it comes in (a client's clock far off, or an
//! id not made as a ULID) goes to one shared part instead, so that such ids cost no more
//! than in a plain map; it is looked in as well whenever it holds anything (a lease is only
//! ever in one place).

use std::collections::hash_map::Entry;

use foldhash::HashMap;

use super::LeaseId;

/// Milliseconds of lease-id time in one part (a power of two: 256 ms).
const PART_SHIFT: u32 = 8;
/// Milliseconds of lease-id time in one part.
#[cfg(test)]
const PART_MS: u64 = 1 << PART_SHIFT;

/// How far from the clock an id's time may be to go to its own part.
const NEAR_MS: u64 = 60 * 60 * 1000;

/// A part keeps no more than four times the room its leases need: emptier, it shrinks.
const SHRINK_BELOW: usize = 4;

/// Decided leases by id (see the module documentation).
#[derive(Debug)]
pub(crate) struct LeaseMap<V> {
    /// Parts by lease-id time (ms) >> [`PART_SHIFT`].
    parts: HashMap<u64, HashMap<LeaseId, V>>,
    /// Leases whose id's time was more than [`NEAR_MS`] from the clock when they came in.
    strays: HashMap<LeaseId, V>,
}

impl<V> Default for LeaseMap<V> {
    fn default() -> Self {
        LeaseMap {
            parts: HashMap::default(),
            strays: HashMap::default(),
        }
    }
}

fn part_of(lease: &LeaseId) -> u64 {
    lease.timestamp_ms() >> PART_SHIFT
}

impl<V> LeaseMap<V> {
    /// Number of leases.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.parts.values().map(HashMap::len).sum::<usize>() + self.strays.len()
    }

    /// The value of `lease`.
    pub(crate) fn get(&self, lease: &LeaseId) -> Option<&V> {
        if let Some(value) = self.parts.get(&part_of(lease)).and_then(|p| p.get(lease)) {
            return Some(value);
        }
        if self.strays.is_empty() {
            return None;
        }
        self.strays.get(lease)
    }

    /// The value of `lease`, to change.
    pub(crate) fn get_mut(&mut self, lease: &LeaseId) -> Option<&mut V> {
        if !self.strays.is_empty() && self.strays.contains_key(lease) {
            return self.strays.get_mut(lease);
        }
        self.parts.get_mut(&part_of(lease))?.get_mut(lease)
    }

    /// Sets the value of `lease` as of `now_ms` (which decides whether a new id is a stray),
    /// returning the one it replaces.
    pub(crate) fn insert(&mut self, lease: LeaseId, value: V, now_ms: i64) -> Option<V> {
        if let Some(slot) = self.strays.get_mut(&lease) {
            return Some(std::mem::replace(slot, value));
        }
        let part = part_of(&lease);
        let now_ms = u64::try_from(now_ms).unwrap_or(0);
        if lease.timestamp_ms().abs_diff(now_ms) > NEAR_MS {
            if let Some(slot) = self.parts.get_mut(&part).and_then(|p| p.get_mut(&lease)) {
                return Some(std::mem::replace(slot, value));
            }
            return self.strays.insert(lease, value);
        }
        self.parts.entry(part).or_default().insert(lease, value)
    }

    /// Takes `lease` out; a part left empty goes, one left mostly empty shrinks.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, lease: &LeaseId) -> Option<V> {
        self.remove_if(lease, |_| true)
    }

    /// Takes `lease` out if `due` holds for its value (a part left empty goes, one left
    /// mostly empty shrinks); with one lookup either way.
    pub(crate) fn remove_if(&mut self, lease: &LeaseId, due: impl FnOnce(&V) -> bool) -> Option<V> {
        if !self.strays.is_empty() {
            if let Entry::Occupied(entry) = self.strays.entry(*lease) {
                let value = due(entry.get()).then(|| entry.remove())?;
                shrink_if_sparse(&mut self.strays);
                return Some(value);
            }
        }
        let part = part_of(lease);
        let leases = self.parts.get_mut(&part)?;
        let Entry::Occupied(entry) = leases.entry(*lease) else {
            return None;
        };
        let value = due(entry.get()).then(|| entry.remove())?;
        if leases.is_empty() {
            self.parts.remove(&part);
            shrink_if_sparse(&mut self.parts);
        } else {
            shrink_if_sparse(leases);
        }
        Some(value)
    }

    /// Every lease and its value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&LeaseId, &V)> {
        (self.parts.values().flat_map(|p| p.iter())).chain(self.strays.iter())
    }
}

/// Gives back the room of a map that has far more than its entries need (a part whose
/// leases were mostly forgotten, kept by a few with longer holds; the parts themselves after
/// a busy hour).
fn shrink_if_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.len().saturating_mul(SHRINK_BELOW) < map.capacity() && map.capacity() > 64 {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests;
