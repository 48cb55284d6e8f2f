//! The pieces of a reserve's take across shards: its parts by shard, each shard's answer, and
//! the rollback of a reserve whose caller stopped waiting before it was decided.

use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::ReserveCoordinator;
use crate::actors::key_shard::{KeyPlace, KeySlot, ReleaseAll, ShardOp, ShardTake};
use crate::backend::Outage;
use crate::model::{LeaseId, Place};

/// One shard's part of a reserve: its keys with their amounts, in request order, and where
/// each of them stands in the request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ShardPart {
    /// The shard.
    pub shard: usize,
    /// Its keys (by slot) with their amounts.
    pub items: SmallVec<[(KeySlot, u64); 4]>,
    /// The index in the request of each item.
    pub requirements: SmallVec<[usize; 4]>,
}

/// The parts of one reserve (most requests touch one or two shards).
pub(super) type ShardParts = SmallVec<[ShardPart; 2]>;

impl ShardPart {
    /// The part of `items` (shard, key's slot, amount; in request order) on `shard`, in
    /// request order.
    pub(super) fn on(items: &[(usize, KeySlot, u64)], shard: usize) -> ShardPart {
        let mut part = ShardPart {
            shard,
            items: SmallVec::new(),
            requirements: SmallVec::new(),
        };
        for (index, &(on, slot, amount)) in items.iter().enumerate() {
            if on == shard {
                part.items.push((slot, amount));
                part.requirements.push(index);
            }
        }
        part
    }
}

/// Groups `items` (shard, key's slot, amount; in request order) by shard, shards in order of
/// first appearance, keeping request order within each shard.
pub(super) fn by_shard(items: &[(usize, KeySlot, u64)]) -> ShardParts {
    distinct_shards(items, |&(shard, ..)| shard)
        .map(|shard| ShardPart::on(items, shard))
        .collect()
}

/// The shard of each of `items` (by `shard_of`) once, in order of first appearance: the
/// order of [`by_shard`]'s parts. Nothing is allocated: requests have a few keys.
#[inline]
pub(super) fn distinct_shards<'a, T, F>(
    items: &'a [T],
    shard_of: F,
) -> impl Iterator<Item = usize> + 'a
where
    F: Fn(&T) -> usize + 'a,
{
    items.iter().enumerate().filter_map(move |(index, item)| {
        let shard = shard_of(item);
        let seen = items[..index]
            .iter()
            .any(|earlier| shard_of(earlier) == shard);
        (!seen).then_some(shard)
    })
}

/// The keys of `items` with where each was taken.
pub(super) fn key_places(items: &[(KeySlot, u64)], places: &[Place]) -> Vec<KeyPlace> {
    items
        .iter()
        .zip(places)
        .map(|(&(slot, _), &place)| (slot, Some(place)))
        .collect()
}

/// A shard's answer to a take.
#[derive(Debug)]
pub(super) enum TakeAnswer {
    /// Given (at once: the shard was idle; or received).
    Ready(ShardTake),
    /// To come through this channel.
    Queued(oneshot::Receiver<ShardTake>),
    /// The shard stopped before answering.
    Stopped,
}

/// Rolls back a reserve whose caller stopped waiting before it was decided: what its shards
/// took is released, the lease is forgotten so the client may retry it, and repeats waiting
/// for it are answered. A take still queued is given back by its shard itself, which finds
/// nobody to answer.
pub(super) struct Undecided<'a> {
    pub coordinator: &'a ReserveCoordinator,
    pub lease: LeaseId,
    pub parts: ShardParts,
    /// One per part, while they are being collected.
    pub answers: SmallVec<[TakeAnswer; 2]>,
    pub armed: bool,
}

impl Drop for Undecided<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for (part, answer) in self.parts.iter().zip(self.answers.drain(..)) {
            let taken = match answer {
                TakeAnswer::Ready(taken) => Some(taken),
                TakeAnswer::Queued(mut rx) => {
                    // Closed first: an answer not sent yet never will be (the shard gives
                    // the take back), one sent already is read here.
                    rx.close();
                    rx.try_recv().ok()
                }
                TakeAnswer::Stopped => None,
            };
            if let Some(ShardTake::Taken(places)) = taken {
                let release = ReleaseAll {
                    lease: self.lease,
                    keys: key_places(&part.items, &places),
                };
                self.coordinator.shards[part.shard].post(ShardOp::Release(release, None));
            }
        }
        let mut book = self.coordinator.book(self.lease);
        book.table.abandon(self.lease);
        for waiter in book.waiters.remove(&self.lease).unwrap_or_default() {
            let _ = waiter.send(Err(Outage::Abandoned.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use smallvec::smallvec;

    use super::*;

    #[test]
    fn requirements_are_grouped_by_shard_in_request_order() {
        let parts = by_shard(&[(1, 10, 1), (0, 11, 2), (1, 12, 3)]);
        let expected: ShardParts = smallvec![
            ShardPart {
                shard: 1,
                items: smallvec![(10, 1), (12, 3)],
                requirements: smallvec![0, 2],
            },
            ShardPart {
                shard: 0,
                items: smallvec![(11, 2)],
                requirements: smallvec![1],
            },
        ];
        assert_eq!(parts, expected);
    }

    #[test]
    fn distinct_shards_come_once_in_the_order_of_the_parts() {
        let items = [(1, 10, 1), (0, 11, 2), (1, 12, 3), (2, 13, 4), (0, 14, 5)];
        let shards: Vec<usize> = distinct_shards(&items, |&(shard, ..)| shard).collect();
        assert_eq!(shards, [1, 0, 2]);
        let parts = by_shard(&items);
        let part_shards: Vec<usize> = parts.iter().map(|part| part.shard).collect();
        assert_eq!(shards, part_shards);
        let none: [(usize, usize, u64); 0] = [];
        assert_eq!(distinct_shards(&none, |&(shard, ..)| shard).count(), 0);
    }
}
