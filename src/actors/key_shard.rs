//! `KeyShard`: the actor that owns the keys hashed to it (a [`KeyState`] each, in its
//! [`ShardKeys`]). The memory backend runs `memory_shards` shards (keys placed by group)
//! over its `memory_arbiters` arbiters, so keys can be spread over several locks and threads
//! while each key keeps exactly one owner.
//!
//! Takes, rollbacks and settles go through the shard's [`ShardInbox`] ([`ShardOp`]): a
//! caller that finds the shard idle applies them on its own thread under the shard's lock,
//! otherwise the actor does on a [`Drain`]; either way one at a time, in order. Definitions,
//! usage, decreases and snapshots are messages to the actor. A request whose keys all live
//! on one shard costs one inbox item.
//!
//! [`KeyState`]: super::key_state::KeyState

use std::sync::Arc;

use actix::prelude::*;

use super::shard_inbox::{Drain, ShardInbox};
pub use super::shard_keys::{
    KeyName, KeyPlace, KeySlot, ReleaseAll, Settle, ShardKeys, ShardOp, ShardTake, TakeAll,
};
use crate::model::{KeySnapshot, LimitDefinition, RetryPolicy, Usage};

/// Largest number of queued messages per shard before senders wait (effectively unbounded:
/// callers are bounded by the HTTP layer and the batch size).
const MAILBOX_CAPACITY: usize = 1 << 20;

/// Creates a key (filed under the given name) or replaces its definition. Answers the key's
/// slot.
#[derive(Debug, Message)]
#[rtype(result = "KeySlot")]
pub struct Put(pub KeyName, pub LimitDefinition);

/// Live usage of a key; `None` if the key is not on this shard.
#[derive(Debug, Message)]
#[rtype(result = "Option<Usage>")]
pub struct GetUsage {
    /// The key.
    pub key: KeyName,
    /// "Now" for expiry.
    pub now_ms: i64,
}

/// Lowers a key's capacity if enough is free; `None` if the key is not on this shard.
#[derive(Debug, Message)]
#[rtype(result = "Option<bool>")]
pub struct TryDecrease {
    /// The key.
    pub key: KeyName,
    /// The new capacity.
    pub to: u64,
    /// "Now" for expiry.
    pub now_ms: i64,
}

/// The live state of every key of this shard that holds something, for a snapshot.
#[derive(Debug, Message)]
#[rtype(result = "Vec<KeySnapshot>")]
pub struct ExportKeys {
    /// "Now": only what is live then is exported.
    pub now_ms: i64,
}

/// Takes snapshot state back in; answers (keys with something live, reservations) taken in.
#[derive(Debug, Message)]
#[rtype(result = "(usize, usize)")]
pub struct ImportKeys {
    /// One entry per key of this shard.
    pub keys: Vec<KeySnapshot>,
    /// "Now": expired reservations are dropped.
    pub now_ms: i64,
}

/// Counts each key's whole capacity in use until its time (an unusable snapshot).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BlockKeys(pub Vec<(KeyName, i64)>);

/// Answers when the shard runs.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Ping;

/// The owner of the keys hashed to one shard.
#[derive(Debug)]
pub struct KeyShard {
    inbox: Arc<ShardInbox>,
}

/// A running shard: its address (for direct messages) and its inbox.
#[derive(Debug, Clone)]
pub struct ShardHandle {
    /// The shard's address.
    pub addr: Addr<KeyShard>,
    inbox: Arc<ShardInbox>,
}

impl ShardHandle {
    /// Starts a shard on `arbiter`, or on the current one.
    pub fn start(policy: RetryPolicy, arbiter: Option<&ArbiterHandle>) -> Self {
        let inbox = Arc::new(ShardInbox::new(policy));
        let shard = KeyShard {
            inbox: Arc::clone(&inbox),
        };
        let addr = match arbiter {
            Some(arbiter) => KeyShard::start_in_arbiter(arbiter, move |_| shard),
            None => shard.start(),
        };
        ShardHandle { addr, inbox }
    }

    /// Queues `op` for the shard.
    pub fn post(&self, op: ShardOp) {
        self.inbox.post(&self.addr, op);
    }

    /// Runs `work` on the shard's keys at once, on this thread, if the shard is idle; `None`
    /// (nothing done) when it is busy: post the item instead.
    pub fn run_now<R>(&self, work: impl FnOnce(&mut ShardKeys) -> R) -> Option<R> {
        self.inbox.run_now(&self.addr, work)
    }

    /// Keeps the shard's keys locked on `arbiter`'s thread for `busy` (returns once they
    /// are), so items queue for the actor instead of being applied by their caller.
    #[cfg(test)]
    pub fn lock_keys_for(&self, arbiter: &ArbiterHandle, busy: std::time::Duration) {
        let inbox = Arc::clone(&self.inbox);
        let (locked, wait) = std::sync::mpsc::channel();
        arbiter.spawn(async move {
            let _keys = inbox.keys();
            let _ = locked.send(());
            std::thread::sleep(busy);
        });
        wait.recv().expect("the arbiter runs");
    }
}

impl Drop for KeyShard {
    fn drop(&mut self) {
        self.inbox.close();
    }
}

impl Actor for KeyShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Handler<Drain> for KeyShard {
    type Result = ();

    /// Applies what is queued now; drains again (after any other message waiting) if more
    /// arrived meanwhile.
    fn handle(&mut self, drain: Drain, ctx: &mut Context<Self>) {
        drain.handled();
        if !self.inbox.drain(&mut self.inbox.keys(), 1) {
            ctx.notify(Drain::new(&self.inbox));
        }
    }
}

impl Handler<Put> for KeyShard {
    type Result = KeySlot;

    fn handle(&mut self, Put(name, definition): Put, _: &mut Context<Self>) -> KeySlot {
        self.inbox.keys().put(name, definition)
    }
}

impl Handler<GetUsage> for KeyShard {
    type Result = Option<Usage>;

    fn handle(&mut self, msg: GetUsage, _: &mut Context<Self>) -> Option<Usage> {
        self.inbox.keys().usage(&msg.key, msg.now_ms)
    }
}

impl Handler<TryDecrease> for KeyShard {
    type Result = Option<bool>;

    fn handle(&mut self, msg: TryDecrease, _: &mut Context<Self>) -> Option<bool> {
        self.inbox.keys().try_decrease(&msg.key, msg.to, msg.now_ms)
    }
}

impl Handler<ExportKeys> for KeyShard {
    type Result = MessageResult<ExportKeys>;

    fn handle(&mut self, msg: ExportKeys, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.inbox.keys().export(msg.now_ms))
    }
}

impl Handler<ImportKeys> for KeyShard {
    type Result = MessageResult<ImportKeys>;

    fn handle(&mut self, msg: ImportKeys, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.inbox.keys().import(msg.keys, msg.now_ms))
    }
}

impl Handler<BlockKeys> for KeyShard {
    type Result = ();

    fn handle(&mut self, BlockKeys(keys): BlockKeys, _: &mut Context<Self>) {
        self.inbox.keys().block(keys);
    }
}

impl Handler<Ping> for KeyShard {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}
