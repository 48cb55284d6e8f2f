//! The storage trait both backends implement (memory actors, TigerBeetle). The service in
//! front of it validates requests and handles key status (unknown, decreasing); a backend
//! only holds capacity, so the same conformance suite runs against every implementation.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use thiserror::Error;

use crate::definitions::DefinitionStore;
use crate::model::{CompleteCommand, LeaseId, LeaseTableFull, LimitState, ReserveCommand, Usage};
#[cfg(feature = "server")]
use crate::settings::InvalidSetting;

/// What a backend answered to a reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every requirement was taken (or the lease was allowed before: idempotent replay).
    Allowed {
        /// When the lease was reserved (Unix ms).
        reserved_at_ms: i64,
    },
    /// Some requirement did not fit (or the lease id was denied before); nothing was taken.
    Denied {
        /// The largest hint among the requirements that did not fit.
        retry_after_ms: u64,
    },
}

/// A backend failure: the client sees `backend_error`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BackendError {
    /// The backend could not be reached or did not answer in time; the outcome is unknown.
    #[error("backend unavailable: {0}")]
    Unavailable(Outage),
    /// The backend answered with something the service cannot use.
    #[error("backend failed: {0}")]
    Failed(Fault),
    /// Every slot of the lease table holds a lease in flight; nothing was taken.
    #[error(transparent)]
    LeaseTableFull(#[from] LeaseTableFull),
    /// The backend is known to be down: answered at once, without calling it.
    #[error("{0}")]
    Down(String),
}

/// Why a backend could not be reached or did not answer.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Outage {
    /// A worker of the backend (key actor, coordinator, batcher) stopped.
    #[error("{worker} stopped")]
    Stopped {
        /// The worker, e.g. `a key actor`.
        worker: &'static str,
    },
    /// A worker's mailbox closed while a message was on its way.
    #[error("{worker} stopped: {reason}")]
    MailboxClosed {
        /// The worker.
        worker: &'static str,
        /// The mailbox's error.
        reason: String,
    },
    /// The reserve this repeat of a lease waited for ended without an answer.
    #[error("reserve was abandoned")]
    Abandoned,
    /// TigerBeetle did not answer within the request bound.
    #[error("TigerBeetle at {addresses} did not answer {operation} within {timeout_ms} ms")]
    TimedOut {
        /// The replica addresses.
        addresses: String,
        /// The client call, e.g. `create_transfers`.
        operation: &'static str,
        /// The bound that passed.
        timeout_ms: u64,
    },
    /// The TigerBeetle client could not send the request.
    #[error("TigerBeetle {operation} failed: {reason}")]
    SendFailed {
        /// The client call.
        operation: &'static str,
        /// The client's error.
        reason: String,
    },
    /// The first call after connecting got no answer.
    #[error("{source} (is TigerBeetle running at {addresses} with cluster id {cluster}?)")]
    NotConnected {
        /// The replica addresses.
        addresses: String,
        /// The cluster id.
        cluster: u128,
        /// What happened to the call.
        source: Box<Outage>,
    },
}

/// What a backend answered that the service cannot use.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Fault {
    /// A key the service considers defined is not defined in the backend.
    #[error("key {key} is not defined in the {backend} backend")]
    UnknownKey {
        /// The backend, e.g. `memory`.
        backend: &'static str,
        /// The key.
        key: String,
    },
    /// The backend's settings break a rule.
    #[cfg(feature = "server")]
    #[error(transparent)]
    Settings(#[from] InvalidSetting),
    /// The TigerBeetle client could not be created.
    #[error("cannot create a TigerBeetle client for addresses {addresses:?}: {reason}")]
    Client {
        /// The replica addresses.
        addresses: String,
        /// The client's error.
        reason: String,
    },
    /// The TigerBeetle client answered with an error other than a send failure.
    #[error("TigerBeetle {operation}: {reason}")]
    Api {
        /// The client call.
        operation: &'static str,
        /// The client's error.
        reason: String,
    },
    /// A work item larger than a TigerBeetle request may hold (items are never split).
    #[error(
        "a work item of {transfers} transfers exceeds the TigerBeetle batch limit of {limit} \
         events and cannot be split (tigerbeetle.batch_max_events)"
    )]
    ItemTooLarge {
        /// Transfers in the item.
        transfers: usize,
        /// The batch limit in force.
        limit: usize,
    },
    /// A work item whose last transfer would link into the next item of the batch.
    #[error("a work item's last transfer must close its chain (no LINKED flag)")]
    OpenChain,
    /// TigerBeetle refused to create an account.
    #[error(
        "TigerBeetle refused to create account {label}: {code} (created earlier with other settings?)"
    )]
    AccountRefused {
        /// The account's label, e.g. `acct:limit:<key>`.
        label: String,
        /// TigerBeetle's result code.
        code: String,
    },
    /// The key's limit account does not exist in TigerBeetle.
    #[error("TigerBeetle has no account acct:limit:{key}; define the key first")]
    NoLimitAccount {
        /// The key.
        key: String,
    },
    /// TigerBeetle refused to fund a key up to its capacity.
    #[error("TigerBeetle refused to fund {key} (operator account constrained?)")]
    FundRefused {
        /// The key.
        key: String,
    },
    /// TigerBeetle refused a capacity change for a reason other than capacity.
    #[error("TigerBeetle refused a capacity change of {key}: {code}")]
    CapacityChangeRefused {
        /// The key.
        key: String,
        /// TigerBeetle's result code.
        code: String,
    },
    /// TigerBeetle refused a reservation for a reason other than capacity.
    #[error("TigerBeetle refused the reservation of {key} for lease {lease}: {code}")]
    ReserveRefused {
        /// The key.
        key: String,
        /// The lease.
        lease: LeaseId,
        /// TigerBeetle's result code.
        code: String,
    },
    /// TigerBeetle refused a step of a complete.
    #[error("TigerBeetle refused to complete lease {lease} on {key}: {code}")]
    CompleteRefused {
        /// The key.
        key: String,
        /// The lease.
        lease: LeaseId,
        /// TigerBeetle's result code.
        code: String,
    },
    /// A lease being completed holds capacity on a limit account of no key defined on this
    /// instance (it was reserved by another instance that knows more keys).
    #[error(
        "lease {lease} holds capacity on TigerBeetle limit account {account}, which belongs \
         to no key defined on this instance; define the key here, or complete the lease on \
         an instance that knows it"
    )]
    LeaseOnUnknownAccount {
        /// The lease.
        lease: LeaseId,
        /// The limit account's id, in hex.
        account: String,
    },
    /// TigerBeetle refused to record an overage as debt.
    #[error("TigerBeetle refused to record debt of lease {lease} on {key}: {code}")]
    DebtRefused {
        /// The key.
        key: String,
        /// The lease.
        lease: LeaseId,
        /// TigerBeetle's result code.
        code: String,
    },
}

impl From<Outage> for BackendError {
    fn from(outage: Outage) -> Self {
        BackendError::Unavailable(outage)
    }
}

impl From<Fault> for BackendError {
    fn from(fault: Fault) -> Self {
        BackendError::Failed(fault)
    }
}

/// A call a backend has started: answered already, or the rest of it to await.
pub enum Started<'a, T> {
    /// Answered without waiting.
    Done(Result<T, BackendError>),
    /// The rest of the call.
    Later(BoxFuture<'a, Result<T, BackendError>>),
}

impl<T> Started<'_, T> {
    /// The call's answer.
    pub async fn finish(self) -> Result<T, BackendError> {
        match self {
            Started::Done(result) => result,
            Started::Later(rest) => rest.await,
        }
    }
}

/// Storage of capacity for every defined key.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs (`memory`, `tigerbeetle`).
    fn name(&self) -> &'static str;

    /// Creates the key or updates its definition. The capacity to enforce is
    /// `state.definition.capacity` (while decreasing, the capacity still in force).
    async fn define(&self, state: &LimitState) -> Result<(), BackendError>;

    /// Takes every requirement or none. Keys are known and active (checked by the caller).
    async fn reserve(&self, command: ReserveCommand) -> Result<ReserveOutcome, BackendError>;

    /// Releases holds and reconciles rolling reservations (SPEC §4 "Complete").
    /// Unknown, denied or already completed leases are a no-op.
    async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError>;

    /// Starts [`Backend::reserve`], answering at once when the backend decides without
    /// waiting (the memory backend, when the shards involved are idle): no future is built
    /// then. By default, the whole call is the rest to await.
    fn start_reserve(&self, command: ReserveCommand) -> Started<'_, ReserveOutcome> {
        Started::Later(self.reserve(command))
    }

    /// Starts [`Backend::complete`], like [`Backend::start_reserve`].
    fn start_complete(&self, command: CompleteCommand) -> Started<'_, ()> {
        Started::Later(self.complete(command))
    }

    /// Live usage of a defined key.
    async fn usage(&self, key: &str) -> Result<Usage, BackendError>;

    /// Applies a pending decrease to `to` if enough capacity is free
    /// (`available >= capacity - to`); returns whether it was applied.
    async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError>;

    /// A cheap call proving the backend answers again after an outage (`Unavailable` if not).
    async fn probe(&self) -> Result<(), BackendError>;

    /// The backend's own Prometheus metrics (e.g. TigerBeetle request sizes and durations),
    /// gathered by each scrape of `GET /metrics`; none by default. They belong to this
    /// backend instance, not to the process.
    #[cfg(feature = "server")]
    fn metrics(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        Vec::new()
    }

    /// Where definitions are kept when several instances share this backend's capacity
    /// (TigerBeetle: the cluster itself); `None` when only this process uses it (memory).
    fn shared_definitions(&self) -> Option<Arc<dyn DefinitionStore>> {
        None
    }

    /// The capacity the backend holds for each of `keys` (for TigerBeetle, funded minus given
    /// back; 0 for a key it has no account for), so that drift from the definitions after a
    /// failure can be healed; `None` when the backend always holds exactly what `define`
    /// gave it (memory).
    async fn held_capacities(&self, keys: &[String]) -> Result<Option<Vec<u64>>, BackendError> {
        let _ = keys;
        Ok(None)
    }
}
