//! The messages the [`super::MicrobatchActor`] answers, and its batch statistics and
//! recorder (a test hook).

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tigerbeetle_unofficial::error::CreateAccountErrorKind;
use tigerbeetle_unofficial::{Account, QueryFilter, Transfer};

use super::MicrobatchActor;

use crate::backend::{BackendError, Outage};
use crate::tigerbeetle::transfers::Failures;

/// The batcher's mailbox closed while a message was on its way.
pub fn stopped(error: MailboxError) -> BackendError {
    Outage::MailboxClosed {
        worker: "the TigerBeetle batcher",
        reason: error.to_string(),
    }
    .into()
}

/// A chain's answer as read from its channel: a channel dropped unanswered means the
/// batcher stopped before answering.
pub fn answered(
    answer: Result<Result<Failures, BackendError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<Failures, BackendError> {
    answer.unwrap_or_else(|_| {
        Err(Outage::Stopped {
            worker: "the TigerBeetle batcher",
        }
        .into())
    })
}

/// Most accounts asked for in one lookup (a `--development` server answers at most 253
/// accounts per request).
pub const LOOKUP_PAGE: usize = 200;

/// Looks up any number of accounts, [`LOOKUP_PAGE`] ids per request; accounts that do not
/// exist are left out.
pub async fn lookup_accounts_paged(
    batcher: &Addr<MicrobatchActor>,
    ids: &[u128],
) -> Result<Vec<Account>, BackendError> {
    let mut found = Vec::with_capacity(ids.len());
    for page in ids.chunks(LOOKUP_PAGE) {
        found.extend(
            batcher
                .send(LookupAccounts(page.to_vec()))
                .await
                .map_err(stopped)??,
        );
    }
    Ok(found)
}

/// Sends transfer chains; answers, per chain and in order, its failures (empty = applied).
#[derive(Debug, Message)]
#[rtype(result = "Vec<Result<Failures, BackendError>>")]
pub struct Submit(pub Vec<Vec<Transfer>>);

/// Looks accounts up (not batched); accounts that do not exist are left out.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Account>, BackendError>")]
pub struct LookupAccounts(pub Vec<u128>);

/// Accounts matching a filter (not batched), in timestamp order (reversed if the filter's
/// `REVERSED` flag is set), at most the filter's limit.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Account>, BackendError>")]
pub struct QueryAccounts(pub QueryFilter);

/// Transfers matching a filter (not batched), like [`QueryAccounts`].
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Transfer>, BackendError>")]
pub struct QueryTransfers(pub QueryFilter);

/// Looks transfers up by id (not batched); transfers that do not exist are left out.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Transfer>, BackendError>")]
pub struct LookupTransfers(pub Vec<u128>);

/// Creates accounts (not batched); answers the failures by index.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<(usize, CreateAccountErrorKind)>, BackendError>")]
pub struct CreateAccounts(pub Vec<Account>);

/// A probe is about to check the cluster: while the client is failing, replace a fresh-client
/// attempt that has been trying for a while with a new one (a young client reconnects soonest).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RefreshCandidate;

/// Asks for the batch statistics so far.
#[derive(Debug, Message)]
#[rtype(result = "BatchStats")]
pub struct GetStats;

/// One request sent to TigerBeetle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord {
    /// Work items (chains) in it.
    pub items: usize,
    /// Events (transfers) in it.
    pub events: usize,
    /// The client session it went out on: 0 is the first, 1, 2, ... extra ones in the order
    /// they opened.
    pub session: usize,
}

/// Test hook: records the size of every batch sent.
#[derive(Debug, Clone, Default)]
pub struct BatchRecorder(Arc<Mutex<Vec<BatchRecord>>>);

impl BatchRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every batch recorded so far, in order.
    pub fn records(&self) -> Vec<BatchRecord> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn push(&self, record: BatchRecord) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }
}

/// Totals since the actor started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Requests sent.
    pub batches: u64,
    /// Work items sent.
    pub items: u64,
    /// Events sent.
    pub events: u64,
    /// The largest request, in events.
    pub largest: usize,
    /// Requests that timed out.
    pub timeouts: u64,
    /// The batch limit in force (lowered if the server refused a batch as too large).
    pub max_events: usize,
    /// Most client sessions open at once.
    pub sessions: usize,
}
