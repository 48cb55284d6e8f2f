//! [`ShardInbox`]: one shard's keys ([`ShardKeys`], behind a lock) and the queue in front of
//! them that takes, rollbacks and settles go through.
//!
//! Whoever finds the shard idle drains the queue: a caller pushes its item and, when nobody
//! is draining, takes the keys' lock itself and applies everything queued so far, its own
//! item included, on its own thread — no hop to the shard's thread and back. Items that
//! arrive meanwhile are applied by that same drainer, in push order, so under load one
//! drainer handles a burst while the other callers only queue and go on: to their parts on
//! other shards, then to their answers, which they look for a few microseconds rather than
//! sleep and be woken from another thread. When the keys
//! are busy (the shard actor holds them for a definition, a decrease or a snapshot) or a
//! drainer has done a few rounds, the rest is handed to the [`KeyShard`] actor with one
//! [`Drain`] message.
//! Either way exactly one thread at a time changes the keys, items are applied in the order
//! they were pushed, and nobody waits for a batch to fill.
//!
//! When the shard is gone the queue is closed: what waited, and anything pushed later, is
//! dropped with its answer channel, which the caller reads as the shard having stopped.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use actix::prelude::*;

use super::key_shard::KeyShard;
use super::shard_keys::{ShardKeys, ShardOp};
use super::spin::spin_for;
use crate::model::RetryPolicy;

/// Rounds (drain everything queued, then look again) a caller does before it hands what
/// still arrives to the shard actor, so one caller is not kept busy by everybody else
/// forever. Each round is short, and a hand-over is costly: while the actor drains, every
/// caller queues and is woken from the actor's thread, which can last as long as callers
/// keep arriving (with 4 rounds, two callers on one shard spent runs of seconds at half
/// speed that way; BENCHMARKS.md, issue #9).
const CALLER_ROUNDS: usize = 64;

/// How long a new drainer waits for the keys' lock before it hands the queue to the actor:
/// whoever holds them lets go within microseconds, while handing over and being answered
/// from another thread costs far more.
const SPIN_FOR_KEYS: Duration = Duration::from_micros(20);

/// Tells a shard that its inbox holds items. Dropped unhandled (the shard's mailbox went away
/// with it inside), it closes the inbox, so no caller waits for an answer that cannot come.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain(Option<Arc<ShardInbox>>);

impl Drain {
    /// A wake-up for the shard draining `inbox`.
    pub fn new(inbox: &Arc<ShardInbox>) -> Self {
        Drain(Some(Arc::clone(inbox)))
    }

    /// Marks it handled.
    pub fn handled(mut self) {
        self.0 = None;
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if let Some(inbox) = self.0.take() {
            inbox.close();
        }
    }
}

/// [`ShardInbox::status`]: somebody (a caller, or the actor after a [`Drain`]) drains; only
/// they apply items, and a push needs do nothing more.
const DRAINING: u8 = 1;
/// [`ShardInbox::status`]: items were pushed since the drainer last looked at the queue.
const QUEUED: u8 = 2;
/// [`ShardInbox::status`]: the shard is gone.
const CLOSED: u8 = 4;

/// One shard's keys and the items waiting for them.
///
/// Who drains, and whether items wait, is one atomic word: a caller that finds the shard
/// idle claims it, applies its work and leaves it idle again with two atomic operations,
/// besides the keys' lock. The queue's own lock is taken only to push items and to take
/// them.
#[derive(Debug)]
pub struct ShardInbox {
    /// [`DRAINING`], [`QUEUED`] and [`CLOSED`].
    status: AtomicU8,
    /// Items in push order. An item is pushed before [`QUEUED`] is set for it, and the
    /// drainer clears [`QUEUED`] before it takes the queue, so an item pushed meanwhile
    /// sets it again: the drainer becomes idle only when nothing was pushed since it looked.
    queue: Mutex<Vec<ShardOp>>,
    keys: Mutex<ShardKeys>,
}

impl ShardInbox {
    /// An empty queue in front of a shard with no keys (new keys get `policy`).
    pub fn new(policy: RetryPolicy) -> Self {
        ShardInbox {
            status: AtomicU8::new(0),
            queue: Mutex::default(),
            keys: Mutex::new(ShardKeys::new(policy)),
        }
    }

    /// Queues `op` and, unless somebody already drains, drains here — or, when the keys are
    /// busy, tells the `shard` actor to.
    pub fn post(self: &Arc<Self>, shard: &Addr<KeyShard>, op: ShardOp) {
        {
            let mut queue = self.queue();
            // `close` marks the inbox before it empties the queue: an item pushed here is
            // either seen closed or dropped by `close`.
            if self.status.load(Ordering::Acquire) & CLOSED != 0 {
                return;
            }
            queue.push(op);
        }
        let before = self.status.fetch_or(QUEUED | DRAINING, Ordering::AcqRel);
        if before & DRAINING != 0 {
            // The drainer applies it (it cannot become idle while the item is queued); the
            // caller looks for the answer when it needs it.
            return;
        }
        let drained = match self.keys_soon() {
            Some(mut keys) => self.drain(&mut keys, CALLER_ROUNDS),
            None => false,
        };
        if !drained {
            self.hand_over(shard);
        }
    }

    /// Runs `work` on the keys at once, on this thread, when the shard is idle (nothing
    /// queued, nobody draining, keys free): what [`ShardInbox::post`] followed by a drain
    /// here would do, without queuing the work or an answer channel. Answers `None`, having
    /// done nothing, when the shard is busy or gone: the caller then posts its item.
    pub fn run_now<R>(
        self: &Arc<Self>,
        shard: &Addr<KeyShard>,
        work: impl FnOnce(&mut ShardKeys) -> R,
    ) -> Option<R> {
        let claimed =
            self.status
                .compare_exchange(0, DRAINING, Ordering::Acquire, Ordering::Relaxed);
        if claimed.is_err() {
            return None;
        }
        let Some(mut keys) = self.keys_soon() else {
            // Whatever is queued from now on goes to the actor.
            self.hand_over(shard);
            return None;
        };
        let answer = work(&mut keys);
        // Idle again at once unless items were queued meanwhile: those are this drainer's.
        let idle = self
            .status
            .compare_exchange(DRAINING, 0, Ordering::Release, Ordering::Relaxed);
        let drained = idle.is_ok() || self.drain(&mut keys, CALLER_ROUNDS);
        drop(keys);
        if !drained {
            self.hand_over(shard);
        }
        Some(answer)
    }

    /// Applies what is queued, at most `rounds` times over, for the drainer (who holds
    /// [`DRAINING`]); `true` when it left the inbox idle (the next push drains anew),
    /// `false` when items still wait (the drainer stays [`DRAINING`] and passes the drain
    /// on).
    pub fn drain(&self, keys: &mut ShardKeys, rounds: usize) -> bool {
        for round in 0..=rounds {
            let before = self.status.fetch_and(!QUEUED, Ordering::AcqRel);
            if before & QUEUED == 0 {
                // Nothing pushed since the last look: idle (keeping `CLOSED`), unless
                // something is by now.
                if (self.status)
                    .compare_exchange(
                        before,
                        before & CLOSED,
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if round == rounds {
                // Left for the next drainer to find.
                self.status.fetch_or(QUEUED, Ordering::AcqRel);
                return false;
            }
            let items = std::mem::take(&mut *self.queue());
            for op in items {
                keys.apply(op);
            }
        }
        false
    }

    /// Passes a caller's drain on to the `shard` actor, which drains from its own thread.
    fn hand_over(self: &Arc<Self>, shard: &Addr<KeyShard>) {
        // A mailbox that is gone drops the message, which closes the inbox.
        shard.do_send(Drain::new(self));
    }

    /// The keys' lock for a caller that has just become the drainer, when it comes within
    /// [`SPIN_FOR_KEYS`]. The lock is usually free; else its holder is a drainer that has
    /// just handed over (it lets go of the keys right after) or the actor in a short request
    /// of its own: waiting a moment costs far less than handing the queue to the actor,
    /// which would then answer every caller from its own thread for as long as they keep
    /// coming. `None` when the keys stay busy.
    fn keys_soon(&self) -> Option<MutexGuard<'_, ShardKeys>> {
        spin_for(SPIN_FOR_KEYS, 64, || match self.keys.try_lock() {
            Ok(keys) => Some(keys),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })
    }

    /// The shard's keys, for the shard actor's own requests (and its drains).
    pub fn keys(&self) -> MutexGuard<'_, ShardKeys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard is gone: drops what waits and refuses what comes.
    pub fn close(&self) {
        self.status.fetch_or(CLOSED, Ordering::AcqRel);
        let items = std::mem::take(&mut *self.queue());
        drop(items);
    }

    fn queue(&self) -> MutexGuard<'_, Vec<ShardOp>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
