//! The storage trait both backends implement (memory actors, TigerBeetle). The service in
//! front of it validates requests and handles key status (unknown, decreasing); a backend
//! only holds capacity, so the same conformance suite runs against every implementation.

use async_trait::async_trait;
use thiserror::Error;

use crate::model::leases::LeaseTableFull;
use crate::model::{CompleteCommand, LimitState, ReserveCommand, Usage};

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
    /// The backend could not be reached or did not answer in time.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something the service cannot use.
    #[error("backend failed: {0}")]
    Failed(String),
    /// Every slot of the lease table holds a lease in flight; nothing was taken.
    #[error(transparent)]
    LeaseTableFull(#[from] LeaseTableFull),
    /// The backend is known to be down: answered at once, without calling it.
    #[error("{0}")]
    Down(String),
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

    /// Live usage of a defined key.
    async fn usage(&self, key: &str) -> Result<Usage, BackendError>;

    /// Applies a pending decrease to `to` if enough capacity is free
    /// (`available >= capacity - to`); returns whether it was applied.
    async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError>;

    /// A cheap call proving the backend answers again after an outage (`Unavailable` if not).
    async fn probe(&self) -> Result<(), BackendError>;
}
