//! [`Outbox`]: the chains submitted one by one during one pass of the caller's executor
//! (the 32 reserves of one `POST /v1/reserve/batch`, or many callers' reserves at once)
//! reach the [`MicrobatchActor`] in one message instead of one message (and one wake-up of
//! its thread) each.
//!
//! The first submitter finding the outbox empty leads: it yields once, so that every other
//! future ready in the same pass adds its chain, then sends them all ([`Enqueue`]). Every
//! submitter, leader included, waits on its own answer channel. A leader dropped while
//! yielding (its caller gave up) still sends what it collected, so no follower is stranded.

use std::sync::{Mutex, MutexGuard};

use actix::Addr;
use tigerbeetle_unofficial::Transfer;
use tokio::sync::oneshot;

use super::messages::{answered, Enqueue};
use super::MicrobatchActor;
use crate::backend::BackendError;
use crate::tigerbeetle::transfers::Failures;

/// Chains waiting for the next message to the batcher.
#[derive(Debug)]
pub struct Outbox {
    batcher: Addr<MicrobatchActor>,
    waiting: Mutex<Waiting>,
}

/// What the outbox holds between a leader's arrival and its send.
#[derive(Debug, Default)]
struct Waiting {
    items: Vec<(Vec<Transfer>, super::Reply)>,
    /// Whether a leader will send `items`.
    led: bool,
}

impl Outbox {
    /// An empty outbox in front of `batcher`.
    pub fn new(batcher: Addr<MicrobatchActor>) -> Self {
        Outbox {
            batcher,
            waiting: Mutex::new(Waiting::default()),
        }
    }

    /// Sends `chain` with whatever else is submitted in this pass; answers its failures
    /// (empty = applied).
    pub async fn submit(&self, chain: Vec<Transfer>) -> Result<Failures, BackendError> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut waiting = self.waiting();
            waiting.items.push((chain, reply));
            !std::mem::replace(&mut waiting.led, true)
        };
        if lead {
            let send = SendOnDrop(self);
            YieldOnce(false).await;
            drop(send);
        }
        // Outside tokio's per-task budget, like the actor messages this replaces: a task
        // awaiting thousands of reserves (one `join_all`) must not exhaust its budget on
        // these answers and starve its own timers.
        answered(tokio::task::unconstrained(answer).await)
    }

    /// Sends everything waiting in one message; a stopped batcher drops the answer channels,
    /// which their submitters read as the batcher having stopped.
    fn send(&self) {
        let items = {
            let mut waiting = self.waiting();
            waiting.led = false;
            std::mem::take(&mut waiting.items)
        };
        if !items.is_empty() {
            self.batcher.do_send(Enqueue(items));
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pending once, waking itself at once: every other future ready in the same pass of the
/// caller's executor (or of a `join_all`) runs before the leader goes on.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Sends the outbox when the leader is done yielding, or is dropped before that.
struct SendOnDrop<'a>(&'a Outbox);

impl Drop for SendOnDrop<'_> {
    fn drop(&mut self) {
        self.0.send();
    }
}
