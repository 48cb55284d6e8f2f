//! Actors: state owners. The in-memory backend (one [`limit_actor::LimitActor`] per key, a
//! [`coordinator::ReserveCoordinator`] giving multi-key reserves their all-or-nothing
//! meaning, wrapped as [`memory::MemoryBackend`]) and the
//! [`decrease_applier::DecreaseApplier`] that retries pending decreases, and the
//! [`snapshot_keeper::SnapshotKeeper`] that saves the memory backend's live state.

mod coordinator;
mod decrease_applier;
mod limit_actor;
mod memory;
mod snapshot_keeper;

pub use decrease_applier::{DecreaseApplier, PendingDecreases};
pub use memory::{MemoryBackend, RestoreSummary};
pub use snapshot_keeper::{restore_snapshot, SaveNow, SnapshotKeeper};
