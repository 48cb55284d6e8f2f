//! The reserve and complete flows of the [`ReserveCoordinator`].
//!
//! Both run synchronously, on the caller's thread, as long as every shard involved is idle:
//! that is the usual case, answered as [`Started::Done`] with no future built. Only when a
//! shard is busy (its part queued in its inbox), a rollback must be acknowledged or a repeat
//! waits for the first attempt does the call go on in a boxed future ([`Started::Later`]).

use std::future::Future;
use std::sync::Arc;

use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::take::{
    by_shard, distinct_shards, key_places, ShardPart, ShardParts, TakeAnswer, Undecided,
};
use super::{answer, replay, stopped, unknown, KeyEntry, ReserveCoordinator};
use crate::actors::key_shard::{
    KeySlot, ReleaseAll, Settle, ShardKeys, ShardOp, ShardTake, TakeAll,
};
use crate::backend::{BackendError, Outage, ReserveOutcome, Started};
use crate::model::leases::{Begun, Hold, Holds, KeyHome, LeaseTableFull};
use crate::model::{CompleteCommand, LeaseId, LimitKind, Place, ReserveCommand};

/// What a reserve comes to.
type ReserveResult = Result<ReserveOutcome, BackendError>;

/// Acknowledgements of items queued on busy shards (none when every shard was idle).
type Acks = SmallVec<[oneshot::Receiver<()>; 2]>;

/// A reserve being decided: what the lease table records once it is.
struct Draft {
    lease: LeaseId,
    now_ms: i64,
    /// One per requirement, in request order; each gets its place when allowed (made as
    /// the table keeps them, in one allocation, and not shared until recorded).
    holds: Holds,
    longest_hold_ms: i64,
}

/// What the shards' answers decide.
enum Decision {
    /// Final.
    Now(ReserveResult),
    /// Final once every busy shard has acknowledged giving back its part.
    AfterAcks(ReserveResult, Acks),
}

/// Waits for every acknowledgement.
async fn acknowledged(acks: Acks) -> Result<(), BackendError> {
    for mut ack in acks {
        answer(&mut ack).await?;
    }
    Ok(())
}

/// A reserve's keys as taken: one hold per requirement, each key's (shard, slot, amount), and
/// the longest hold.
type Resolved = (Holds, SmallVec<[(usize, KeySlot, u64); 4]>, i64);

/// What a reserve takes, from each requirement's directory entry (in request order).
#[inline]
fn resolve(entries: &[&KeyEntry], command: &ReserveCommand) -> Resolved {
    let by_requirement = || entries.iter().zip(&command.requirements);
    let holds = by_requirement()
        .map(|(entry, requirement)| Hold {
            key: Arc::clone(&entry.name),
            amount: requirement.amount,
            kind: entry.kind,
            hold_ms: entry.hold_ms,
            place: None,
            home: KeyHome::new(entry.shard, entry.slot),
        })
        .collect();
    let items = by_requirement()
        .map(|(entry, requirement)| (entry.shard, entry.slot, requirement.amount))
        .collect();
    let longest_hold_ms = entries.iter().map(|e| e.hold_ms).max().unwrap_or(0);
    (holds, items, longest_hold_ms)
}

/// Writes where a shard took its items (`places`, in item order) into the holds of those
/// items (`requirements`: each item's index in the request). The holds are not shared before
/// the lease is recorded, so always writable; a hold without its place would still be found
/// by lease.
fn place_holds(holds: &mut Holds, requirements: impl Iterator<Item = usize>, places: &[Place]) {
    let Some(holds) = Holds::get_mut(holds) else {
        return;
    };
    for (index, &place) in requirements.zip(places) {
        if let Some(hold) = holds.get_mut(index) {
            hold.place = Some(place);
        }
    }
}

impl ReserveCoordinator {
    /// Reserves every requirement or none.
    pub async fn reserve(&self, command: ReserveCommand) -> ReserveResult {
        self.start_reserve(command).finish().await
    }

    /// Runs a reserve as far as it goes without waiting.
    pub fn start_reserve(&self, command: ReserveCommand) -> Started<'_, ReserveOutcome> {
        let now_ms = self.clock.now_ms();
        let lease = command.lease;
        // The keys first (the directory is read before the lease table is touched): a lease
        // with an unknown key is never recorded.
        let resolved = {
            let directory = self.directory();
            let mut entries: SmallVec<[&KeyEntry; 4]> = SmallVec::new();
            let mut unknown_key = None;
            for requirement in &command.requirements {
                match directory.get(requirement.key.as_ref()) {
                    Some(entry) => entries.push(entry),
                    None => {
                        unknown_key = Some(requirement.key.as_ref());
                        break;
                    }
                }
            }
            match unknown_key {
                Some(key) => Err(key),
                None => Ok(resolve(&entries, &command)),
            }
        };
        let mut book = self.book(lease);
        let known = match resolved {
            // A remembered lease is answered as before, even if a key went away since.
            Err(key) => match book.table.get(lease, now_ms) {
                Some(outcome) => outcome,
                None => return Started::Done(Err(unknown(key))),
            },
            // The table refuses a new lease only when every slot holds one in flight.
            Ok((holds, items, longest_hold_ms)) => match book
                .table
                .begin_if(lease, now_ms, |n| self.book_fits(lease, n))
            {
                Ok(Begun::New) => {
                    drop(book);
                    let draft = Draft {
                        lease,
                        now_ms,
                        holds,
                        longest_hold_ms,
                    };
                    return self.take(draft, items);
                }
                Ok(Begun::Known(outcome)) => outcome,
                // Reported with the whole table's capacity (the setting to raise).
                Err(_) => {
                    let full = LeaseTableFull {
                        capacity: self.lease_capacity,
                    };
                    return Started::Done(Err(full.into()));
                }
            },
        };
        match replay(known) {
            Some(answer) => Started::Done(Ok(answer)),
            None => {
                // Being decided: wait for that answer.
                let (tx, rx) = oneshot::channel();
                book.waiters.entry(lease).or_default().push(tx);
                Started::Later(Box::pin(async move {
                    rx.await.unwrap_or_else(|_| Err(Outage::Abandoned.into()))
                }))
            }
        }
    }

    /// Takes a new lease's parts on their shards: at once on an idle shard, else queued;
    /// either way before the first wait, so a batch's items reach each shard in array order.
    /// When every shard takes its part at once (the usual case) the reserve is allowed
    /// right here, with no parts kept for a rollback that cannot happen.
    fn take(
        &self,
        mut draft: Draft,
        items: SmallVec<[(usize, KeySlot, u64); 4]>,
    ) -> Started<'_, ReserveOutcome> {
        let (lease, now_ms) = (draft.lease, draft.now_ms);
        let mut answers: SmallVec<[TakeAnswer; 2]> = SmallVec::new();
        let mut all_taken = true;
        for shard in distinct_shards(&items, |&(shard, ..)| shard) {
            let part = ShardPart::on(&items, shard);
            let inbox = &self.shards[shard];
            let answer = match inbox.run_now(|keys| keys.take(lease, &part.items, now_ms)) {
                Some(ShardTake::Taken(places)) => {
                    place_holds(&mut draft.holds, part.requirements.iter().copied(), &places);
                    TakeAnswer::Ready(ShardTake::Taken(places))
                }
                Some(taken) => {
                    all_taken = false;
                    TakeAnswer::Ready(taken)
                }
                None => {
                    all_taken = false;
                    let (tx, rx) = oneshot::channel();
                    let items = part.items.to_vec();
                    inbox.post(ShardOp::Take(
                        TakeAll {
                            lease,
                            items,
                            now_ms,
                        },
                        tx,
                    ));
                    TakeAnswer::Queued(rx)
                }
            };
            answers.push(answer);
        }
        if all_taken {
            let allowed = Ok(ReserveOutcome::Allowed {
                reserved_at_ms: now_ms,
            });
            return Started::Done(self.record(draft, allowed));
        }
        // Needed only now (for a rollback): the same parts, in the order of the answers.
        let parts = by_shard(&items);
        let queued = answers
            .iter()
            .any(|answer| matches!(answer, TakeAnswer::Queued(_)));
        if queued {
            // From here on the caller may stop waiting: the guard rolls back if it does.
            let guard = Undecided {
                coordinator: self,
                lease,
                parts,
                answers,
                armed: true,
            };
            return Started::Later(Box::pin(self.take_later(guard, draft)));
        }
        let decision = self.decide(lease, &parts, answers, now_ms, &mut draft.holds);
        match decision {
            Decision::Now(result) => Started::Done(self.record(draft, result)),
            Decision::AfterAcks(result, acks) => {
                Started::Later(Box::pin(self.record_after(acks, result, draft)))
            }
        }
    }

    /// A reserve with a part queued on a busy shard: waits for every answer, then decides.
    async fn take_later(&self, mut guard: Undecided<'_>, mut draft: Draft) -> ReserveResult {
        for answer in guard.answers.iter_mut() {
            if let TakeAnswer::Queued(rx) = answer {
                // The receiver stays in the guard until answered: dropped meanwhile, the
                // guard still reads an answer sent already and gives the take back.
                *answer = match super::answer(rx).await {
                    Ok(taken) => TakeAnswer::Ready(taken),
                    Err(_) => TakeAnswer::Stopped,
                };
            }
        }
        guard.armed = false;
        let answers = std::mem::take(&mut guard.answers);
        match self.decide(
            guard.lease,
            &guard.parts,
            answers,
            draft.now_ms,
            &mut draft.holds,
        ) {
            Decision::Now(result) => self.record(draft, result),
            Decision::AfterAcks(result, acks) => self.record_after(acks, result, draft).await,
        }
    }

    /// Records a denial (or failure) once every rollback is acknowledged. Dropped before
    /// that, even before it is first polled, the lease is forgotten (the client may retry
    /// it): the guard is armed when the future is made.
    fn record_after(
        &self,
        acks: Acks,
        result: ReserveResult,
        draft: Draft,
    ) -> impl Future<Output = ReserveResult> + '_ {
        let guard = Undecided {
            coordinator: self,
            lease: draft.lease,
            parts: ShardParts::new(),
            answers: SmallVec::new(),
            armed: true,
        };
        async move {
            // The whole guard moves in (not only the field set below).
            let mut guard = guard;
            let acknowledged = acknowledged(acks).await;
            guard.armed = false;
            self.record(draft, acknowledged.and(result))
        }
    }

    /// Turns the shards' answers (none queued any more) into the outcome: allowed, with where
    /// each hold was taken written into `holds`; or not, with what was taken given back
    /// (acknowledged before the denial is answered). Runs without waiting, so the caller
    /// cannot stop half-way: no rollback guard is needed from here.
    fn decide(
        &self,
        lease: LeaseId,
        parts: &ShardParts,
        answers: SmallVec<[TakeAnswer; 2]>,
        now_ms: i64,
        holds: &mut Holds,
    ) -> Decision {
        let mut denied_hint = None;
        let mut failure = None;
        // The parts taken, with where.
        let mut taken: SmallVec<[_; 2]> = SmallVec::new();
        for (part, answer) in parts.iter().zip(answers) {
            match answer {
                TakeAnswer::Ready(ShardTake::Taken(places)) => taken.push((part, places)),
                TakeAnswer::Ready(ShardTake::NotFit { retry_after_ms }) => {
                    denied_hint = Some(denied_hint.unwrap_or(0).max(retry_after_ms));
                }
                TakeAnswer::Ready(ShardTake::Unknown { item }) => {
                    let key = (part.requirements.get(item)).and_then(|&index| holds.get(index));
                    failure = Some(unknown(key.map_or("", |hold| &*hold.key)));
                }
                TakeAnswer::Queued(_) | TakeAnswer::Stopped => failure = Some(stopped(())),
            }
        }
        if denied_hint.is_none() && failure.is_none() {
            for (part, places) in taken {
                place_holds(holds, part.requirements.iter().copied(), &places);
            }
            return Decision::Now(Ok(ReserveOutcome::Allowed {
                reserved_at_ms: now_ms,
            }));
        }
        let acks = self.on_every_shard(
            taken
                .iter()
                .map(|(part, places)| (part.shard, (part, places))),
            |keys, (part, places)| keys.release_taken(lease, &part.items, places),
            |(part, places), ack| {
                let keys = key_places(&part.items, places);
                ShardOp::Release(ReleaseAll { lease, keys }, Some(ack))
            },
        );
        let result = match (failure, denied_hint) {
            (None, Some(retry_after_ms)) => Ok(ReserveOutcome::Denied { retry_after_ms }),
            (Some(failure), _) => Err(failure),
            (None, None) => Err(stopped(())),
        };
        if acks.is_empty() {
            Decision::Now(result)
        } else {
            Decision::AfterAcks(result, acks)
        }
    }

    /// Records a decided reserve in the lease table and answers the repeats waiting for it.
    fn record(&self, draft: Draft, result: ReserveResult) -> ReserveResult {
        let Draft {
            lease,
            now_ms,
            holds,
            longest_hold_ms,
        } = draft;
        let mut book = self.book(lease);
        match &result {
            Ok(ReserveOutcome::Allowed { .. }) => {
                book.table.allow(lease, now_ms, holds, longest_hold_ms)
            }
            Ok(ReserveOutcome::Denied { retry_after_ms }) => {
                book.table
                    .deny(lease, now_ms, *retry_after_ms, longest_hold_ms)
            }
            Err(_) => book.table.abandon(lease),
        }
        self.changed();
        if !book.waiters.is_empty() {
            for waiter in book.waiters.remove(&lease).unwrap_or_default() {
                let _ = waiter.send(result.clone());
            }
        }
        result
    }

    /// Releases the holds and reconciles the reservations of an allowed lease (once; any
    /// other lease is a no-op).
    pub async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError> {
        self.start_complete(command).finish().await
    }

    /// Applies a complete on every idle shard at once, queues it on the busy ones (then
    /// the rest is to wait for them).
    pub fn start_complete(&self, command: CompleteCommand) -> Started<'_, ()> {
        let acks = self.settle_lease(command);
        self.changed();
        if acks.is_empty() {
            Started::Done(Ok(()))
        } else {
            Started::Later(Box::pin(async move {
                let acknowledged = acknowledged(acks).await;
                // Applied on the busy shards by now.
                self.changed();
                acknowledged
            }))
        }
    }

    /// Releases and reconciles an allowed lease's holds on each shard: the
    /// acknowledgements of the shards that were busy.
    fn settle_lease(&self, command: CompleteCommand) -> Acks {
        let now_ms = self.clock.now_ms();
        let Some((_, holds)) = self
            .book(command.lease)
            .table
            .start_complete(command.lease, now_ms)
        else {
            return Acks::new();
        };
        let lease = command.lease;
        // Holds taken here know their key's shard and slot; those taken back in from a
        // snapshot are looked up (a key no longer defined has nothing to settle).
        let mut directory = None;
        // Each hold's index with its key's shard and slot.
        let located: SmallVec<[(usize, usize, KeySlot); 4]> = (holds.iter().enumerate())
            .filter_map(|(index, hold)| {
                let (shard, slot) = match hold.home {
                    Some(home) => (home.shard(), home.slot()),
                    None => {
                        let directory = directory.get_or_insert_with(|| self.directory());
                        let entry = directory.get(&*hold.key)?;
                        (entry.shard, entry.slot)
                    }
                };
                Some((index, shard, slot))
            })
            .collect();
        drop(directory);
        // Each shard's settle is built in place, applied there on an idle shard and moved
        // only onto a busy shard's inbox. Written out rather than through `on_every_shard`:
        // its closures cost a 4-key complete ~400 more instructions (callgrind).
        let mut acks = Acks::new();
        for shard in distinct_shards(&located, |&(_, shard, _)| shard) {
            let mut settle = Settle {
                lease,
                releases: SmallVec::new(),
                reconciles: SmallVec::new(),
                now_ms,
            };
            for &(index, on, slot) in &located {
                let Some(hold) = holds.get(index).filter(|_| on == shard) else {
                    continue;
                };
                let key = (slot, hold.place);
                match hold.kind {
                    LimitKind::Concurrency => settle.releases.push(key),
                    LimitKind::Rolling => {
                        // Actuals usually come in the order of the requirements.
                        let actual = (command.actuals.get(index))
                            .filter(|a| *a.key == *hold.key)
                            .or_else(|| command.actuals.iter().find(|a| *a.key == *hold.key));
                        if let Some(actual) = actual {
                            settle.reconciles.push((key, actual.actual_amount));
                        }
                    }
                }
            }
            let inbox = &self.shards[shard];
            if inbox.run_now(|keys| keys.settle(&settle)).is_none() {
                let (tx, rx) = oneshot::channel();
                inbox.post(ShardOp::Settle(Box::new(settle), tx));
                acks.push(rx);
            }
        }
        acks
    }

    /// Applies each shard's part at once when that shard is idle (`now`), else queues it
    /// (`queued`, to be acknowledged): the acknowledgements to wait for.
    fn on_every_shard<T>(
        &self,
        parts: impl Iterator<Item = (usize, T)>,
        now: impl Fn(&mut ShardKeys, &T),
        queued: impl Fn(T, oneshot::Sender<()>) -> ShardOp,
    ) -> Acks {
        let mut acks = Acks::new();
        for (shard, part) in parts {
            let shard = &self.shards[shard];
            if shard.run_now(|keys| now(keys, &part)).is_none() {
                let (tx, rx) = oneshot::channel();
                shard.post(queued(part, tx));
                acks.push(rx);
            }
        }
        acks
    }
}

#[cfg(test)]
mod tests;
