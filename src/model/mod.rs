//! Domain model: plain data shared by every layer — limit definitions and states, the wire
//! types of the HTTP API, validation, the retry-after policy, lease bookkeeping and the
//! clock. Nothing here performs I/O or talks to actors.

pub mod api;
pub mod clock;
pub mod definition;
pub mod errors;
pub mod leases;
pub mod retry;

pub use api::{
    Actual, BatchRequest, BatchResponse, CompleteCommand, CompleteRequest, CompleteResponse,
    Requirement, ReserveCommand, ReserveRequest, ReserveResponse, DEFAULT_MAX_BATCH_ITEMS,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use definition::{
    LimitDefinition, LimitInfo, LimitKind, LimitState, LimitStatus, Overage, Usage,
};
pub use errors::{ErrorCode, InvalidRequest};
pub use retry::{Backoff, DenyStreak, InvalidRetry, RetryPolicy};

/// A lease id: one ULID per reserve attempt (SPEC §1).
pub type LeaseId = ulid::Ulid;
