//! Actors: state owners. The in-memory backend (one [`limit_actor::LimitActor`] per key, a
//! [`coordinator::ReserveCoordinator`] giving multi-key reserves their all-or-nothing
//! meaning, wrapped as [`memory::MemoryBackend`]) and the
//! [`decrease_applier::DecreaseApplier`] that retries pending decreases.

mod coordinator;
mod decrease_applier;
mod limit_actor;
mod memory;

pub use decrease_applier::{DecreaseApplier, PendingDecreases};
pub use memory::MemoryBackend;
