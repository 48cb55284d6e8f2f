//! The TigerBeetle backend (SPEC §5), compiled with the `tigerbeetle` cargo feature.
//!
//! Capacity lives in a TigerBeetle cluster, so many `ratelimiterd` instances can share it:
//! every limit key is an account that can never spend more than the operator funded into
//! it, and every reservation is a pending transfer that TigerBeetle itself expires.
//!
//! - Settings: [`TigerBeetleSettings`] (defined with the server settings, the one type for
//!   them, so a build without this feature still parses and checks them).
//! - [`ids`]: the id scheme: every account and transfer id derives from a label.
//! - [`accounts`]: the operator, limit and debt accounts, their ids, what balances mean.
//! - [`transfers`]: deterministic transfer labels, chain builders, failure verdicts.
//! - [`microbatch`]: [`MicrobatchActor`], the batching owner of the TigerBeetle client.
//! - [`book`]: in-memory hints and lease metadata.
//! - [`backend`]: [`TigerBeetleBackend`], the [`crate::backend::Backend`] implementation.
//! - [`complete`]: voids, re-reserves and debt on `complete`.

pub mod accounts;
pub mod backend;
pub(crate) mod book;
pub(crate) mod complete;
pub mod ids;
pub mod microbatch;
pub mod transfers;

pub use crate::settings::{TigerBeetleSettings, TIGERBEETLE_MAX_BATCH_EVENTS};
pub use backend::TigerBeetleBackend;
pub use microbatch::{BatchRecord, BatchRecorder, BatchStats, MicrobatchActor};
