//! The TigerBeetle backend (SPEC §5), compiled with the `tigerbeetle` cargo feature.
//!
//! Capacity lives in a TigerBeetle cluster, so many `ratelimiterd` instances can share it:
//! every limit key is an account that can never spend more than the operator funded into
//! it, and every reservation is a pending transfer that TigerBeetle itself expires.
//!
//! - Settings: [`TigerBeetleSettings`] (defined with the server settings, the one type for
//!   them, so a build without this feature still parses and checks them).
//! - [`backend`]: [`TigerBeetleBackend`], the [`crate::backend::Backend`] implementation,
//!   and the public face of this module, with [`BatchRecorder`] / [`BatchStats`] (what the
//!   microbatcher sent) and [`FIRST_CALL_ALLOWANCE`] (how long a new client's first call
//!   may take on top of `request_timeout_ms`).
//! - [`testing`]: a throwaway TigerBeetle server for tests and benchmarks, and read-only
//!   looks at its ledger.
//!
//! Internal (crate-only):
//! - `ids`: the id scheme: every account and transfer id derives from a label.
//! - `accounts`: the operator, limit and debt accounts, their ids, what balances mean.
//! - `transfers`: deterministic transfer labels, chain builders, failure verdicts.
//! - `microbatch`: `MicrobatchActor`, the batching owner of the TigerBeetle client.
//! - `metrics`: its Prometheus histograms (request sizes and durations), per backend.
//! - `book`: in-memory hints and lease metadata.
//! - `complete`: voids, re-reserves and debt on `complete`, on any instance.
//! - `ledger_lease`: what a lease reserved elsewhere holds, read off the ledger.
//! - [`definitions`]: [`ClusterDefinitions`], the limit definitions kept in the cluster, so
//!   every instance shares them.

pub(crate) mod accounts;
pub mod backend;
pub(crate) mod book;
pub(crate) mod complete;
pub mod definitions;
pub(crate) mod ids;
pub(crate) mod ledger_lease;
pub(crate) mod metrics;
pub(crate) mod microbatch;
pub mod testing;
pub(crate) mod transfers;

pub use crate::settings::{
    TigerBeetleSettings, TIGERBEETLE_MAX_BATCH_EVENTS, TIGERBEETLE_MAX_SESSIONS,
};
pub use backend::TigerBeetleBackend;
pub use definitions::ClusterDefinitions;
pub use microbatch::{BatchRecord, BatchRecorder, BatchStats, FIRST_CALL_ALLOWANCE};
