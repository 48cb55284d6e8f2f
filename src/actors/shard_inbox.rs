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

use std::sync::{Mutex, MutexGuard};

use actix::prelude::*;

use super::key_shard::{KeyShard, ShardOp};

/// Tells a shard that its inbox holds items.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

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
    pub fn post(&self, shard: &Addr<KeyShard>, op: ShardOp) {
        let tell = {
            let mut state = self.state();
            if state.closed {
                return;
            }
            state.items.push(op);
            !std::mem::replace(&mut state.scheduled, true)
        };
        if tell {
            shard.do_send(Drain);
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
