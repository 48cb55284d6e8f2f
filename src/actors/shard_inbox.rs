//! [`ShardInbox`]: the queue in front of one [`KeyShard`] that takes, rollbacks and settles
//! go through. A caller pushes its item and, only when the shard has not been told yet,
//! sends it one [`Drain`] message; the shard then handles everything queued so far in one go.
//! A lone request costs one message, as a direct one would; under load the items that
//! arrive while the shard is busy wait and are handled together, so the shard's thread is
//! woken once per burst, not once per request, and nobody waits for a batch to fill.
//!
//! Items are handled in the order they were pushed. When the shard is gone the queue is
//! closed: what waited, and anything pushed later, is dropped with its answer channel, which
//! the caller reads as the shard having stopped.

use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;

use super::key_shard::{KeyShard, ShardOp};

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

/// Items waiting for one shard.
#[derive(Debug, Default)]
pub struct ShardInbox {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    items: Vec<ShardOp>,
    /// A [`Drain`] is on its way or being handled: pushing needs no new one.
    scheduled: bool,
    /// The shard is gone.
    closed: bool,
}

impl ShardInbox {
    /// Queues `op` for `shard`, telling the shard unless it has been told already.
    pub fn post(self: &Arc<Self>, shard: &Addr<KeyShard>, op: ShardOp) {
        let tell = {
            let mut state = self.state();
            if state.closed {
                return;
            }
            state.items.push(op);
            !std::mem::replace(&mut state.scheduled, true)
        };
        if tell {
            // A mailbox that is gone drops the message, which closes the inbox.
            shard.do_send(Drain::new(self));
        }
    }

    /// Everything queued so far, in order (for the shard).
    pub fn take(&self) -> Vec<ShardOp> {
        std::mem::take(&mut self.state().items)
    }

    /// After a drain: `true` if more arrived meanwhile (the shard drains again), else the
    /// next push tells the shard anew.
    pub fn more(&self) -> bool {
        let mut state = self.state();
        state.scheduled = !state.items.is_empty();
        state.scheduled
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
    use crate::actors::key_shard::{KeyName, Put, ShardHandle, ShardTake, TakeAll};
    use crate::model::{LeaseId, LimitDefinition, RetryPolicy};

    fn take(shard: &ShardHandle, key: &KeyName) -> oneshot::Receiver<ShardTake> {
        let (tx, rx) = oneshot::channel();
        let take = TakeAll {
            lease: LeaseId::new(),
            items: vec![(Arc::clone(key), 1)],
            now_ms: 0,
        };
        shard.post(ShardOp::Take(take, tx));
        rx
    }

    #[actix_rt::test]
    async fn items_queued_while_the_shard_is_busy_are_handled_together_in_order() {
        let arbiter = Arbiter::new();
        let shard = ShardHandle::start(RetryPolicy::default(), Some(&arbiter.handle()));
        let key: KeyName = Arc::from("k");
        shard
            .addr
            .send(Put(LimitDefinition::concurrency("k", 2, 600)))
            .await
            .unwrap();
        // The shard's thread is busy while three takes queue up behind one another.
        arbiter.spawn(async { std::thread::sleep(Duration::from_millis(200)) });
        let answers: Vec<_> = (0..3).map(|_| take(&shard, &key)).collect();
        let answers =
            tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(answers))
                .await
                .expect("answered within 5 s");
        let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers[..2], [ShardTake::Taken, ShardTake::Taken]);
        assert!(
            matches!(answers[2], ShardTake::NotFit { .. }),
            "{answers:?}"
        );
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn a_stopped_shard_closes_its_inbox_and_callers_read_it_as_stopped() {
        let arbiter = Arbiter::new();
        let shard = ShardHandle::start(RetryPolicy::default(), Some(&arbiter.handle()));
        let key: KeyName = Arc::from("k");
        arbiter.stop();
        arbiter.join().unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), take(&shard, &key))
            .await
            .expect("answered within 5 s");
        assert!(answer.is_err(), "the answer channel is dropped: {answer:?}");
    }
}
