//! Actors: state owners. The in-memory backend — [`key_shard::KeyShard`] actors spread
//! over its arbiters (threads), each the single owner of the keys whose group hashes to it
//! ([`placement`]; a [`key_state::KeyState`] each, behind the shard's lock; callers that
//! find a shard idle apply their takes and settles under that lock on their own thread, see
//! [`shard_inbox`]), and the
//! [`coordinator::ReserveCoordinator`] giving multi-key reserves their all-or-nothing
//! meaning, wrapped as [`memory::MemoryBackend`] — the
//! [`decrease_applier::DecreaseApplier`] that retries pending decreases, and the
//! [`snapshot_keeper::SnapshotKeeper`] that saves the memory backend's live state — and the
//! [`outbox::Outbox`] that carries the items posted in one executor pass to an actor in one
//! message (the TigerBeetle batcher's inbound path).

mod coordinator;
mod decrease_applier;
mod key_shard;
mod key_state;
mod memory;
pub mod outbox;
mod placement;
mod shard_inbox;
mod shard_keys;
mod snapshot_keeper;
mod spin;

pub use decrease_applier::{DecreaseApplier, PendingDecreases};
pub use memory::{default_arbiters, default_shards, MemoryBackend, MemoryOptions, RestoreSummary};
pub use snapshot_keeper::{restore_snapshot, SaveNow, SnapshotKeeper};
