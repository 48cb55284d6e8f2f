//! Domain model: plain data shared by every layer — limit definitions and states, the wire
//! types of the HTTP API, validation, the retry-after policy, lease bookkeeping and the
//! clock. Nothing here performs I/O or talks to actors.

mod api;
mod clock;
pub(crate) mod command;
mod definition;
mod errors;
mod forget_order;
pub(crate) mod lease_ids;
mod lease_map;
pub(crate) mod leases;
mod reservations;
mod retry;
mod snapshot;
pub(crate) mod throttle;

pub use api::{
    Actual, BatchRequest, BatchResponse, CompleteRequest, CompleteResponse, RequestKey,
    Requirement, ReserveRequest, ReserveResponse, DEFAULT_MAX_BATCH_ITEMS, MAX_REQUIREMENTS,
};
pub use clock::{rfc3339_utc, Clock, ManualClock, SharedClock, SystemClock};
pub use command::{CompleteCommand, ReserveCommand};
pub use definition::{
    LimitDefinition, LimitInfo, LimitKind, LimitState, LimitStatus, Overage, Usage,
};
pub use errors::{ErrorCode, InvalidRequest};
pub use lease_ids::new_lease_id;
pub use leases::{Hold, LeaseRecord, LeaseTableFull, DEFAULT_MAX_LEASES};
pub use reservations::{Place, Reservations, Settled};
pub use retry::{Backoff, DenyStreak, InvalidRetry, RetryPolicy, DEFAULT_WINDOW_MARGIN_MS};
pub use snapshot::{KeySnapshot, MemorySnapshot, ReservationRecord, SNAPSHOT_VERSION};

/// A lease id: one ULID per reserve attempt (SPEC §1).
pub type LeaseId = ulid::Ulid;
