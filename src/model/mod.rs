//! Domain model: plain data shared by every layer — limit definitions and states, the wire
//! types of the HTTP API, validation, the retry-after policy, lease bookkeeping, the clock
//! and the TigerBeetle id scheme. Nothing here performs I/O or talks to actors.

pub mod api;
pub mod clock;
pub mod definition;
pub mod errors;
pub mod ids;
pub mod leases;
pub mod reservations;
pub mod retry;

pub use api::{
    Actual, BatchRequest, BatchResponse, CompleteCommand, CompleteRequest, CompleteResponse,
    Requirement, ReserveCommand, ReserveRequest, ReserveResponse,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use definition::{
    LimitDefinition, LimitInfo, LimitKind, LimitState, LimitStatus, Overage, Usage,
};
pub use errors::{ErrorCode, InvalidRequest};
pub use reservations::Reservations;
pub use retry::{Backoff, DenyStreak, RetryPolicy, DEFAULT_WINDOW_MARGIN_MS};

/// A lease id: one ULID per reserve attempt (SPEC §1).
pub type LeaseId = ulid::Ulid;
