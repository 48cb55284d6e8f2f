//! [`Outbox`]: the chains submitted one by one during one pass of the caller's executor
//! (the 32 reserves of one `POST /v1/reserve/batch`, or many callers' reserves at once)
//! reach the [`MicrobatchActor`] in one message instead of one message (and one wake-up of
//! its thread) each — a [`crate::actors::outbox::Outbox`] of chains, each with its own
//! answer channel.

use tigerbeetle_unofficial::Transfer;
use tokio::sync::oneshot;

use super::messages::answered;
use super::{MicrobatchActor, Reply};
use crate::actors::outbox;
use crate::backend::BackendError;
use crate::tigerbeetle::transfers::Failures;

/// Chains waiting for the next message to the batcher.
#[derive(Debug)]
pub struct Outbox(outbox::Outbox<MicrobatchActor, (Vec<Transfer>, Reply)>);

impl Outbox {
    /// An empty outbox in front of `batcher`.
    pub fn new(batcher: actix::Addr<MicrobatchActor>) -> Self {
        Outbox(outbox::Outbox::new(batcher))
    }

    /// Sends `chain` with whatever else is submitted in this pass; answers its failures
    /// (empty = applied).
    pub async fn submit(&self, chain: Vec<Transfer>) -> Result<Failures, BackendError> {
        let (reply, answer) = oneshot::channel();
        if let Some(lead) = self.0.post((chain, reply)) {
            lead.send().await;
        }
        // Outside tokio's per-task budget, like the actor messages this replaces: a task
        // awaiting thousands of reserves (one `join_all`) must not exhaust its budget on
        // these answers and starve its own timers.
        answered(tokio::task::unconstrained(answer).await)
    }
}
