//! `ShardKeys`: the keys of one shard ([`KeyState`] each) and what can be done to them — the
//! inbox items ([`ShardOp`]: takes, rollbacks, settles) and the shard actor's own requests
//! (definitions, usage, decreases, snapshots). It lives behind its shard's lock
//! ([`super::shard_inbox::ShardInbox`]), so exactly one thread at a time changes a key.
//!
//! A take is all or nothing within the shard: what fitted is given back before answering
//! when anything did not fit.

use foldhash::{HashMap, HashMapExt};
use smallvec::SmallVec;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::key_state::{KeyState, TakeResult};
use crate::model::{KeySnapshot, LeaseId, LimitDefinition, Place, RetryPolicy, Usage};

/// A key's name, shared (not copied) by those that keep it: a directory copy, the holds of
/// leases, the shard.
pub type KeyName = Arc<str>;

/// A key's index among its shard's keys: given when the key is created and kept for the
/// shard's life (keys are never removed), so the hot paths name a key by it instead of
/// hashing its name.
pub type KeySlot = usize;

/// Where each item of a take was put, in item order.
pub type Places = SmallVec<[Place; 4]>;

/// A key of the shard and where a lease's reservation on it is (`None`: found by lease, for
/// leases taken back in from a snapshot).
pub type KeyPlace = (KeySlot, Option<Place>);

/// Takes every item for `lease`, all or nothing within this shard.
#[derive(Debug)]
pub struct TakeAll {
    /// The lease taking capacity.
    pub lease: LeaseId,
    /// Keys of this shard with their amounts, in request order.
    pub items: Vec<(KeySlot, u64)>,
    /// The caller's "now", shared by every key of one reserve.
    pub now_ms: i64,
}

/// The answer to [`TakeAll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardTake {
    /// Every item was taken; where, item by item.
    Taken(Places),
    /// Something did not fit; nothing is held. The largest hint of the keys that did not fit.
    NotFit {
        /// The retry-after hint.
        retry_after_ms: u64,
    },
    /// The key of this item (its index in the take) is not on this shard; nothing is held.
    Unknown {
        /// The item's index.
        item: usize,
    },
}

/// Gives back what `lease` holds on these keys (rollback of a take elsewhere).
#[derive(Debug)]
pub struct ReleaseAll {
    /// The lease.
    pub lease: LeaseId,
    /// The keys it took on this shard, with where.
    pub keys: Vec<KeyPlace>,
}

/// Completes `lease` on this shard: releases its concurrency holds and reconciles its rolling
/// reservations with the actual usage.
#[derive(Debug)]
pub struct Settle {
    /// The lease.
    pub lease: LeaseId,
    /// Concurrency keys to release.
    pub releases: SmallVec<[KeyPlace; 4]>,
    /// Rolling keys with their actual usage.
    pub reconciles: SmallVec<[(KeyPlace, u64); 4]>,
    /// The caller's "now".
    pub now_ms: i64,
}

/// One item of a shard's inbox, with the channel its answer goes to.
#[derive(Debug)]
pub enum ShardOp {
    /// A reserve's take on this shard.
    Take(TakeAll, oneshot::Sender<ShardTake>),
    /// A rollback; acknowledged when a sender is given.
    Release(ReleaseAll, Option<oneshot::Sender<()>>),
    /// A complete's part on this shard, acknowledged (boxed: it carries its keys inline).
    Settle(Box<Settle>, oneshot::Sender<()>),
}

/// The keys hashed to one shard.
#[derive(Debug)]
pub struct ShardKeys {
    policy: RetryPolicy,
    /// Each key's state, at its slot.
    keys: Vec<KeyState>,
    /// Each key's slot by name, for the requests that name a key.
    slots: HashMap<KeyName, KeySlot>,
}

impl ShardKeys {
    /// No keys yet; new keys get `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        ShardKeys {
            policy,
            keys: Vec::new(),
            slots: HashMap::new(),
        }
    }

    /// The key at `slot`.
    fn at(&mut self, slot: KeySlot) -> Option<&mut KeyState> {
        self.keys.get_mut(slot)
    }

    /// The key named `key`.
    fn named(&mut self, key: &str) -> Option<&mut KeyState> {
        let slot = *self.slots.get(key)?;
        self.at(slot)
    }

    /// Applies one inbox item and answers it.
    pub fn apply(&mut self, op: ShardOp) {
        // A caller that stopped waiting dropped its receiver; its item still counts (a take
        // is rolled back by the `Release` its drop queued behind it).
        match op {
            ShardOp::Take(take, answer) => {
                let taken = self.take(take.lease, &take.items, take.now_ms);
                // Nobody will keep these places: what was taken is given back now.
                if let Err(ShardTake::Taken(places)) = answer.send(taken) {
                    self.release_taken(take.lease, &take.items, &places);
                }
            }
            ShardOp::Release(release, ack) => {
                self.release(release.lease, &release.keys);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            ShardOp::Settle(settle, ack) => {
                self.settle(&settle);
                let _ = ack.send(());
            }
        }
    }

    /// Takes every item (key's slot, amount) for `lease` at `now_ms`, all or nothing.
    pub fn take(&mut self, lease: LeaseId, items: &[(KeySlot, u64)], now_ms: i64) -> ShardTake {
        // Every key is tried (a key that fits counts an allow for its deny streak, as when
        // each key decided alone); the hint is the largest of the keys that did not fit.
        let mut denied_hint: Option<u64> = None;
        // What was taken so far, key by key (a denied key took nothing).
        let mut taken: SmallVec<[(KeySlot, Place); 4]> = SmallVec::new();
        for (item, &(slot, amount)) in items.iter().enumerate() {
            let Some(state) = self.at(slot) else {
                // Not here (the directory learns a slot from the shard, so this is a safety
                // net): what was taken so far is given back.
                self.give_back(lease, taken);
                return ShardTake::Unknown { item };
            };
            match state.try_take(lease, amount, now_ms) {
                TakeResult::Taken(place) => taken.push((slot, place)),
                TakeResult::NotFit { retry_after_ms } => {
                    denied_hint = Some(denied_hint.unwrap_or(0).max(retry_after_ms));
                }
            }
        }
        match denied_hint {
            None => ShardTake::Taken(taken.into_iter().map(|(_, place)| place).collect()),
            Some(retry_after_ms) => {
                self.give_back(lease, taken);
                ShardTake::NotFit { retry_after_ms }
            }
        }
    }

    /// Gives back what `lease` took, key by key at its place.
    fn give_back(&mut self, lease: LeaseId, taken: impl IntoIterator<Item = (KeySlot, Place)>) {
        for (slot, place) in taken {
            if let Some(state) = self.at(slot) {
                state.release(lease, Some(place));
            }
        }
    }

    /// Gives back what `lease` took on `items` at `places` (item by item).
    pub fn release_taken(&mut self, lease: LeaseId, items: &[(KeySlot, u64)], places: &[Place]) {
        self.give_back(
            lease,
            items
                .iter()
                .map(|&(slot, _)| slot)
                .zip(places.iter().copied()),
        );
    }

    /// Gives back what `lease` holds on `keys`.
    pub fn release(&mut self, lease: LeaseId, keys: &[KeyPlace]) {
        for &(slot, place) in keys {
            if let Some(state) = self.at(slot) {
                state.release(lease, place);
            }
        }
    }

    /// Releases and reconciles what `msg` names.
    pub fn settle(&mut self, msg: &Settle) {
        self.release(msg.lease, &msg.releases);
        for &((slot, place), actual) in &msg.reconciles {
            if let Some(state) = self.at(slot) {
                state.reconcile(msg.lease, place, actual, msg.now_ms);
            }
        }
    }

    /// Creates a key, filed under `name` (the definition's key), or replaces its
    /// definition: the key's slot either way.
    pub fn put(&mut self, name: KeyName, definition: LimitDefinition) -> KeySlot {
        debug_assert_eq!(*name, *definition.key, "a key is filed under its own name");
        if let Some(&slot) = self.slots.get(&name) {
            if let Some(state) = self.at(slot) {
                state.redefine(definition);
                return slot;
            }
        }
        let slot = self.keys.len();
        self.keys.push(KeyState::new(definition, self.policy));
        self.slots.insert(name, slot);
        slot
    }

    /// Live usage of `key` at `now_ms`; `None` if it is not here.
    pub fn usage(&mut self, key: &str, now_ms: i64) -> Option<Usage> {
        let state = self.named(key)?;
        state.expire(now_ms);
        Some(state.usage())
    }

    /// Lowers `key`'s capacity to `to` if enough is free; `None` if it is not here.
    pub fn try_decrease(&mut self, key: &str, to: u64, now_ms: i64) -> Option<bool> {
        Some(self.named(key)?.try_decrease(to, now_ms))
    }

    /// The live state of every key that holds something at `now_ms`.
    pub fn export(&mut self, now_ms: i64) -> Vec<KeySnapshot> {
        self.keys
            .iter_mut()
            .map(|state| state.export(now_ms))
            .filter(|key| !key.is_empty())
            .collect()
    }

    /// Takes snapshot state back in; answers (keys with something live, reservations).
    pub fn import(&mut self, keys: Vec<KeySnapshot>, now_ms: i64) -> (usize, usize) {
        let (mut imported_keys, mut reservations) = (0, 0);
        for snapshot in keys {
            if let Some(state) = self.named(snapshot.key.as_str()) {
                let imported = state.import(snapshot, now_ms);
                if imported > 0 {
                    imported_keys += 1;
                    reservations += imported;
                }
            }
        }
        (imported_keys, reservations)
    }

    /// Counts each key's whole capacity in use until its time.
    pub fn block(&mut self, keys: Vec<(KeyName, i64)>) {
        for (key, until_ms) in keys {
            if let Some(state) = self.named(&key) {
                state.block_until(until_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_that_fails_part_way_gives_back_exactly_what_it_took() {
        let mut keys = ShardKeys::new(RetryPolicy::default());
        let full = keys.put(
            Arc::from("full"),
            LimitDefinition::concurrency("full", 1, 60),
        );
        let free = keys.put(
            Arc::from("free"),
            LimitDefinition::concurrency("free", 5, 60),
        );
        assert!(matches!(
            keys.take(LeaseId::new(), &[(full, 1)], 0),
            ShardTake::Taken(_)
        ));
        // Denied on "full", taken on "free", then a slot this shard does not have.
        let items = [(full, 1), (free, 2), (7, 1)];
        assert_eq!(
            keys.take(LeaseId::new(), &items, 0),
            ShardTake::Unknown { item: 2 }
        );
        assert_eq!(keys.usage("free", 0).map(|u| u.in_use), Some(0));
        assert_eq!(keys.usage("full", 0).map(|u| u.in_use), Some(1));
        // Denied on "full" alone: "free" is given back too.
        let items = [(free, 2), (full, 1)];
        assert!(matches!(
            keys.take(LeaseId::new(), &items, 0),
            ShardTake::NotFit { .. }
        ));
        assert_eq!(keys.usage("free", 0).map(|u| u.in_use), Some(0));
        assert_eq!(keys.usage("full", 0).map(|u| u.in_use), Some(1));
    }

    #[test]
    fn a_key_keeps_its_slot_when_redefined_and_each_new_key_gets_the_next() {
        let mut keys = ShardKeys::new(RetryPolicy::default());
        let a = keys.put(Arc::from("a"), LimitDefinition::concurrency("a", 1, 60));
        let b = keys.put(Arc::from("b"), LimitDefinition::concurrency("b", 1, 60));
        assert_eq!((a, b), (0, 1));
        let again = keys.put(Arc::from("a"), LimitDefinition::concurrency("a", 3, 60));
        assert_eq!(again, a);
        assert_eq!(keys.usage("a", 0).map(|u| u.available), Some(3));
        assert_eq!(keys.usage("missing", 0), None);
    }
}
