//! [`ShardInbox`]: one shard's keys ([`ShardKeys`], behind a lock) and the queue in front of
//! them that takes, rollbacks and settles go through.
//!
//! Whoever finds the shard idle drains the queue: a caller pushes its item and, when nobody
//! is draining, takes the keys' lock itself and applies everything queued so far, its own
//! item included, on its own thread — no hop to the shard's thread and back. Items that
//! arrive meanwhile are applied by that same drainer, in push order, so under load one
//! drainer handles a burst while the other callers only queue (and wait a few microseconds
//! for that drain to end, rather than sleep and be woken from another thread). When the keys
//! are busy (the shard actor holds them for a definition, a decrease or a snapshot) or a
//! drainer has done a few rounds, the rest is handed to the [`KeyShard`] actor with one
//! [`Drain`] message.
//! Either way exactly one thread at a time changes the keys, items are applied in the order
//! they were pushed, and nobody waits for a batch to fill.
//!
//! When the shard is gone the queue is closed: what waited, and anything pushed later, is
//! dropped with its answer channel, which the caller reads as the shard having stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::key_shard::KeyShard;
use super::shard_keys::{ShardKeys, ShardOp};
use crate::model::RetryPolicy;

/// Rounds (drain everything queued, then look again) a caller does before it hands what
/// still arrives to the shard actor, so one caller is not kept busy by everybody else
/// forever. Each round is short, and a hand-over is costly: while the actor drains, every
/// caller queues and is woken from the actor's thread, which can last as long as callers
/// keep arriving (with 4 rounds, two callers on one shard spent runs of seconds at half
/// speed that way; BENCHMARKS.md, issue #9).
const CALLER_ROUNDS: usize = 64;

/// How long a caller whose item another thread is applying waits for that drain to end
/// before it gives up its thread, and how long a new drainer waits for the keys' lock
/// before it hands the queue to the actor: a drain takes microseconds, while sleeping and
/// being woken from another thread costs far more.
const SPIN_FOR_DRAIN: Duration = Duration::from_micros(20);

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

/// One shard's keys and the items waiting for them.
#[derive(Debug)]
pub struct ShardInbox {
    state: Mutex<State>,
    keys: Mutex<ShardKeys>,
    /// A caller is applying the queue right now, on its thread (not the actor, which may be
    /// busy for long): the callers queuing meanwhile spin for it rather than sleep.
    caller_draining: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    items: Vec<ShardOp>,
    /// Somebody (a caller, or the actor after a [`Drain`]) drains: pushing needs do nothing
    /// more.
    draining: bool,
    /// The shard is gone.
    closed: bool,
}

impl ShardInbox {
    /// An empty queue in front of a shard with no keys (new keys get `policy`).
    pub fn new(policy: RetryPolicy) -> Self {
        ShardInbox {
            state: Mutex::default(),
            keys: Mutex::new(ShardKeys::new(policy)),
            caller_draining: AtomicBool::new(false),
        }
    }

    /// Queues `op` and, unless somebody already drains, drains here — or, when the keys are
    /// busy, tells the `shard` actor to.
    pub fn post(self: &Arc<Self>, shard: &Addr<KeyShard>, op: ShardOp) {
        {
            let mut state = self.state();
            if state.closed {
                return;
            }
            state.items.push(op);
            if state.draining {
                drop(state);
                self.spin_while_a_caller_drains();
                return;
            }
            state.draining = true;
        }
        let drained = match self.keys_soon() {
            Some(mut keys) => self.drain_here(&mut keys),
            None => false,
        };
        if !drained {
            // A mailbox that is gone drops the message, which closes the inbox.
            shard.do_send(Drain::new(self));
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
        {
            // Items wait only while somebody drains: not draining means nothing queued.
            let mut state = self.state();
            if state.closed || state.draining {
                return None;
            }
            state.draining = true;
        }
        let Some(mut keys) = self.keys_soon() else {
            // Whatever was queued since `draining` was set goes to the actor.
            shard.do_send(Drain::new(self));
            return None;
        };
        self.caller_draining.store(true, Ordering::Release);
        let answer = work(&mut keys);
        // Items queued meanwhile are this drainer's.
        let drained = self.drain(&mut keys, CALLER_ROUNDS);
        self.caller_draining.store(false, Ordering::Release);
        drop(keys);
        if !drained {
            shard.do_send(Drain::new(self));
        }
        Some(answer)
    }

    /// Applies what is queued, at most `rounds` times over; `true` when the queue was left
    /// empty (the next push drains anew), `false` when items still wait (the caller passes
    /// the drain on).
    pub fn drain(&self, keys: &mut ShardKeys, rounds: usize) -> bool {
        for round in 0..=rounds {
            let items = {
                // One lock per round: an empty queue (the usual case) ends the drain at once.
                let mut state = self.state();
                if state.items.is_empty() {
                    state.draining = false;
                    return true;
                }
                if round == rounds {
                    return false;
                }
                std::mem::take(&mut state.items)
            };
            for op in items {
                keys.apply(op);
            }
        }
        false
    }

    /// A caller's drain, on its own thread.
    fn drain_here(&self, keys: &mut ShardKeys) -> bool {
        self.caller_draining.store(true, Ordering::Release);
        let drained = self.drain(keys, CALLER_ROUNDS);
        self.caller_draining.store(false, Ordering::Release);
        drained
    }

    /// Waits (at most [`SPIN_FOR_DRAIN`]) for a caller's drain under way to end: it applies
    /// every item queued before it ends (or hands them to the actor), so the caller's answer
    /// is then usually ready without its thread ever sleeping.
    fn spin_while_a_caller_drains(&self) {
        let start = Instant::now();
        while self.caller_draining.load(Ordering::Acquire) {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            if start.elapsed() > SPIN_FOR_DRAIN {
                return;
            }
        }
    }

    /// The keys' lock for a caller that has just become the drainer, when it comes within
    /// [`SPIN_FOR_DRAIN`]. The lock is usually free; else its holder is a drainer that has
    /// just handed over (it lets go of the keys right after) or the actor in a short request
    /// of its own: waiting a moment costs far less than handing the queue to the actor,
    /// which would then answer every caller from its own thread for as long as they keep
    /// coming. `None` when the keys stay busy.
    fn keys_soon(&self) -> Option<MutexGuard<'_, ShardKeys>> {
        let mut start = None;
        loop {
            match self.keys.try_lock() {
                Ok(keys) => return Some(keys),
                Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
            // The clock is read only once the keys were found busy.
            if start.get_or_insert_with(Instant::now).elapsed() > SPIN_FOR_DRAIN {
                return None;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    /// The shard's keys, for the shard actor's own requests (and its drains).
    pub fn keys(&self) -> MutexGuard<'_, ShardKeys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard is gone: drops what waits and refuses what comes.
    pub fn close(&self) {
        let items = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        drop(items);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::actors::key_shard::{KeySlot, Put, ShardHandle, ShardTake, TakeAll};
    use crate::model::{LeaseId, LimitDefinition, RetryPolicy};

    fn take(shard: &ShardHandle, key: &KeySlot) -> oneshot::Receiver<ShardTake> {
        let (tx, rx) = oneshot::channel();
        let take = TakeAll {
            lease: LeaseId::new(),
            items: vec![(*key, 1)],
            now_ms: 0,
        };
        shard.post(ShardOp::Take(take, tx));
        rx
    }

    /// A shard on an arbiter of its own, with the concurrency key `k` of `capacity`.
    async fn shard_with_concurrency_key(capacity: u64) -> (Arbiter, ShardHandle, KeySlot) {
        let arbiter = Arbiter::new();
        let shard = ShardHandle::start(RetryPolicy::default(), Some(&arbiter.handle()));
        let slot = shard
            .addr
            .send(Put(
                Arc::from("k"),
                LimitDefinition::concurrency("k", capacity, 600),
            ))
            .await
            .unwrap();
        (arbiter, shard, slot)
    }

    #[actix_rt::test]
    async fn items_queued_while_the_shard_is_busy_are_handled_together_in_order() {
        let (arbiter, shard, key) = shard_with_concurrency_key(2).await;
        // The shard's keys are busy while three takes queue up behind one another.
        shard.lock_keys_for(&arbiter.handle(), Duration::from_millis(200));
        let answers: Vec<_> = (0..3).map(|_| take(&shard, &key)).collect();
        let answers =
            tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(answers))
                .await
                .expect("answered within 5 s");
        let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
        assert!(
            answers[..2]
                .iter()
                .all(|a| matches!(a, ShardTake::Taken(places) if places.len() == 1)),
            "{answers:?}"
        );
        assert!(
            matches!(answers[2], ShardTake::NotFit { .. }),
            "{answers:?}"
        );
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn a_caller_that_finds_the_shard_idle_applies_its_item_on_its_own_thread() {
        let (arbiter, shard, key) = shard_with_concurrency_key(1).await;
        // The shard's thread sleeps (its keys are free): the answers are there at once.
        arbiter.spawn(async { std::thread::sleep(Duration::from_millis(500)) });
        let mut first = take(&shard, &key);
        let mut second = take(&shard, &key);
        assert!(
            matches!(first.try_recv(), Ok(ShardTake::Taken(_))),
            "{first:?}"
        );
        assert!(
            matches!(second.try_recv(), Ok(ShardTake::NotFit { .. })),
            "{second:?}"
        );
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn work_runs_at_once_on_an_idle_shard_and_not_at_all_on_a_busy_one() {
        let (arbiter, shard, key) = shard_with_concurrency_key(1).await;
        let lease = LeaseId::new();
        let items = [(key, 1)];
        let taken = shard.run_now(|keys| keys.take(lease, &items, 0));
        assert!(matches!(taken, Some(ShardTake::Taken(_))), "{taken:?}");
        shard.lock_keys_for(&arbiter.handle(), Duration::from_millis(300));
        let mut ran = false;
        assert_eq!(shard.run_now(|_| ran = true), None);
        assert!(!ran, "a busy shard's keys are not touched");
        // The key's one slot is taken: a take queued behind the busy keys is denied.
        let answer = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
            .await
            .expect("answered within 5 s");
        assert!(matches!(answer, Ok(ShardTake::NotFit { .. })), "{answer:?}");
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn a_take_nobody_waits_for_any_more_is_given_back_by_the_shard() {
        let (arbiter, shard, key) = shard_with_concurrency_key(1).await;
        shard.lock_keys_for(&arbiter.handle(), Duration::from_millis(200));
        // Queued behind the busy keys, then its caller stops waiting.
        drop(take(&shard, &key));
        let answer = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
            .await
            .expect("answered within 5 s");
        assert!(matches!(answer, Ok(ShardTake::Taken(_))), "{answer:?}");
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn a_stopped_shard_closes_its_inbox_and_callers_read_it_as_stopped() {
        let arbiter = Arbiter::new();
        let shard = ShardHandle::start(RetryPolicy::default(), Some(&arbiter.handle()));
        let key: KeySlot = 0;
        arbiter.stop();
        arbiter.join().unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
            .await
            .expect("answered within 5 s");
        assert!(answer.is_err(), "the answer channel is dropped: {answer:?}");
    }
}
