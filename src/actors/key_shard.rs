//! `KeyShard`: the actor that owns the live state of every key hashed to it (a
//! [`KeyState`] each). The memory backend runs one shard per arbiter (`memory_arbiters`), so
//! keys can be spread over several threads while each key keeps exactly one owner.
//!
//! Messages carry every item of one request that lives on this shard, so a request whose keys
//! all live on one shard costs one message; a take is all or nothing within the shard (what
//! fitted is given back before answering when anything did not fit). Takes, rollbacks and
//! settles come through the shard's [`ShardInbox`] ([`ShardOp`]), handled in order, many per
//! wake-up under load.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::key_state::{KeyState, TakeResult};
use super::shard_inbox::{Drain, ShardInbox};
use crate::model::{KeySnapshot, LeaseId, LimitDefinition, RetryPolicy, Usage};

/// A key's name, shared (not copied) between the directory, messages and the shard.
pub type KeyName = Arc<str>;

/// Largest number of queued messages per shard before senders wait (effectively unbounded:
/// callers are bounded by the HTTP layer and the batch size).
const MAILBOX_CAPACITY: usize = 1 << 20;

/// Takes every item for `lease`, all or nothing within this shard.
#[derive(Debug)]
pub struct TakeAll {
    /// The lease taking capacity.
    pub lease: LeaseId,
    /// Keys of this shard with their amounts, in request order.
    pub items: Vec<(KeyName, u64)>,
    /// The caller's "now", shared by every key of one reserve.
    pub now_ms: i64,
}

/// The answer to [`TakeAll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardTake {
    /// Every item was taken.
    Taken,
    /// Something did not fit; nothing is held. The largest hint of the keys that did not fit.
    NotFit {
        /// The retry-after hint.
        retry_after_ms: u64,
    },
    /// A key is not defined on this shard; nothing is held.
    Unknown(KeyName),
}

/// Gives back what `lease` holds on these keys (rollback of a take elsewhere).
#[derive(Debug)]
pub struct ReleaseAll {
    /// The lease.
    pub lease: LeaseId,
    /// The keys it took on this shard.
    pub keys: Vec<KeyName>,
}

/// Completes `lease` on this shard: releases its concurrency holds and reconciles its rolling
/// reservations with the actual usage.
#[derive(Debug)]
pub struct Settle {
    /// The lease.
    pub lease: LeaseId,
    /// Concurrency keys to release.
    pub releases: Vec<KeyName>,
    /// Rolling keys with their actual usage.
    pub reconciles: Vec<(KeyName, u64)>,
    /// The caller's "now".
    pub now_ms: i64,
}

/// One item of a shard's [`ShardInbox`], with the channel its answer goes to.
#[derive(Debug)]
pub enum ShardOp {
    /// A reserve's take on this shard.
    Take(TakeAll, oneshot::Sender<ShardTake>),
    /// A rollback; acknowledged when a sender is given.
    Release(ReleaseAll, Option<oneshot::Sender<()>>),
    /// A complete's part on this shard, acknowledged.
    Settle(Settle, oneshot::Sender<()>),
}

/// Creates a key or replaces its definition.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Put(pub LimitDefinition);

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
    policy: RetryPolicy,
    keys: HashMap<KeyName, KeyState>,
    inbox: Arc<ShardInbox>,
}

impl KeyShard {
    /// A shard with no keys, draining `inbox`.
    pub fn new(policy: RetryPolicy, inbox: Arc<ShardInbox>) -> Self {
        KeyShard {
            policy,
            keys: HashMap::new(),
            inbox,
        }
    }

    fn apply(&mut self, op: ShardOp) {
        // A caller that stopped waiting dropped its receiver; its item still counts (a take
        // is rolled back by the `Release` its drop queued behind it).
        match op {
            ShardOp::Take(take, answer) => {
                let _ = answer.send(self.take(take));
            }
            ShardOp::Release(release, ack) => {
                self.release(release);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            ShardOp::Settle(settle, ack) => {
                self.settle(settle);
                let _ = ack.send(());
            }
        }
    }
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
        let inbox = Arc::new(ShardInbox::default());
        let shard_inbox = Arc::clone(&inbox);
        let addr = match arbiter {
            Some(arbiter) => {
                KeyShard::start_in_arbiter(arbiter, move |_| KeyShard::new(policy, shard_inbox))
            }
            None => KeyShard::new(policy, shard_inbox).start(),
        };
        ShardHandle { addr, inbox }
    }

    /// Queues `op` for the shard.
    pub fn post(&self, op: ShardOp) {
        self.inbox.post(&self.addr, op);
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

    /// Handles what is queued now; drains again (after any other message waiting) if more
    /// arrived meanwhile.
    fn handle(&mut self, drain: Drain, ctx: &mut Context<Self>) {
        drain.handled();
        for op in self.inbox.take() {
            self.apply(op);
        }
        if self.inbox.more() {
            ctx.notify(Drain::new(&self.inbox));
        }
    }
}

impl KeyShard {
    fn take(&mut self, msg: TakeAll) -> ShardTake {
        if let Some((key, _)) = msg.items.iter().find(|(k, _)| !self.keys.contains_key(k)) {
            return ShardTake::Unknown(Arc::clone(key));
        }
        // Every key is tried (a key that fits counts an allow for its deny streak, as when
        // each key decided alone); the hint is the largest of the keys that did not fit.
        let mut denied_hint: Option<u64> = None;
        for (key, amount) in &msg.items {
            let Some(state) = self.keys.get_mut(key) else {
                continue;
            };
            if let TakeResult::NotFit { retry_after_ms } =
                state.try_take(msg.lease, *amount, msg.now_ms)
            {
                denied_hint = Some(denied_hint.unwrap_or(0).max(retry_after_ms));
            }
        }
        match denied_hint {
            None => ShardTake::Taken,
            Some(retry_after_ms) => {
                for (key, _) in &msg.items {
                    if let Some(state) = self.keys.get_mut(key) {
                        state.release(msg.lease);
                    }
                }
                ShardTake::NotFit { retry_after_ms }
            }
        }
    }

    fn release(&mut self, msg: ReleaseAll) {
        for key in &msg.keys {
            if let Some(state) = self.keys.get_mut(key) {
                state.release(msg.lease);
            }
        }
    }

    fn settle(&mut self, msg: Settle) {
        for key in &msg.releases {
            if let Some(state) = self.keys.get_mut(key) {
                state.release(msg.lease);
            }
        }
        for (key, actual) in &msg.reconciles {
            if let Some(state) = self.keys.get_mut(key) {
                state.reconcile(msg.lease, *actual, msg.now_ms);
            }
        }
    }
}

impl Handler<Put> for KeyShard {
    type Result = ();

    fn handle(&mut self, Put(definition): Put, _: &mut Context<Self>) {
        match self.keys.get_mut(definition.key.as_str()) {
            Some(state) => state.redefine(definition),
            None => {
                let key: KeyName = Arc::from(definition.key.as_str());
                self.keys
                    .insert(key, KeyState::new(definition, self.policy));
            }
        }
    }
}

impl Handler<GetUsage> for KeyShard {
    type Result = Option<Usage>;

    fn handle(&mut self, msg: GetUsage, _: &mut Context<Self>) -> Option<Usage> {
        let state = self.keys.get_mut(&msg.key)?;
        state.expire(msg.now_ms);
        Some(state.usage())
    }
}

impl Handler<TryDecrease> for KeyShard {
    type Result = Option<bool>;

    fn handle(&mut self, msg: TryDecrease, _: &mut Context<Self>) -> Option<bool> {
        let state = self.keys.get_mut(&msg.key)?;
        Some(state.try_decrease(msg.to, msg.now_ms))
    }
}

impl Handler<ExportKeys> for KeyShard {
    type Result = MessageResult<ExportKeys>;

    fn handle(&mut self, msg: ExportKeys, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.keys
                .values_mut()
                .map(|state| state.export(msg.now_ms))
                .filter(|key| !key.is_empty())
                .collect(),
        )
    }
}

impl Handler<ImportKeys> for KeyShard {
    type Result = MessageResult<ImportKeys>;

    fn handle(&mut self, msg: ImportKeys, _: &mut Context<Self>) -> Self::Result {
        let (mut keys, mut reservations) = (0, 0);
        for snapshot in msg.keys {
            if let Some(state) = self.keys.get_mut(snapshot.key.as_str()) {
                let imported = state.import(snapshot, msg.now_ms);
                if imported > 0 {
                    keys += 1;
                    reservations += imported;
                }
            }
        }
        MessageResult((keys, reservations))
    }
}

impl Handler<BlockKeys> for KeyShard {
    type Result = ();

    fn handle(&mut self, BlockKeys(keys): BlockKeys, _: &mut Context<Self>) {
        for (key, until_ms) in keys {
            if let Some(state) = self.keys.get_mut(&key) {
                state.block_until(until_ms);
            }
        }
    }
}

impl Handler<Ping> for KeyShard {
    type Result = ();

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}
