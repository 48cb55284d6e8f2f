//! `ratelimiter`: the shared rate-limit layer for LLM-heavy programs.
//!
//! - [`model`]: plain domain data (definitions, API types, retry policy, leases, clock).
//! - [`limits_file`]: the limits file format, the one validator of limit states.
//! - [`registry`]: the JSON registry file with atomic saves.
//! - [`definitions`]: definitions shared by the instances of a cluster (versioned records).
//! - [`backend`]: the storage trait both backends implement.
//! - [`actors`]: the in-memory backend as actors (one per key), the decrease applier.
//! - [`outage`]: the known-down state shared by every backend (fail fast, probe, policy).
//! - [`snapshot`]: the memory backend's live reservations, saved at stop and loaded at start.
//! - [`service`]: the limiter service: control plane (definitions) and data plane (reserve/complete).
//! - [`client`]: the client library (Limiter trait, clients, batcher, scheduler).
//! - `http` (feature `server`): the `ratelimiterd` HTTP API.
//! - `settings` (feature `server`): `ratelimiterd`'s settings (file, environment, flags).
//! - `runner` (feature `cogni`): Cogni, the repository question evaluator.
//! - `tigerbeetle` (feature `tigerbeetle`): the TigerBeetle backend.
//!
//! # Features
//!
//! - `client`: the modules above without a feature; no HTTP server, command-line parser
//!   or config-file reader is compiled.
//! - `server` (default): the HTTP API and the `ratelimiterd` and `ratelimiter-loadtest`
//!   binaries.
//! - `cogni` (default): the evaluator and the `cogni` and `llm-sim` binaries.
//! - `tigerbeetle`: the TigerBeetle backend (needs Zig to build its client).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod actors;
mod atomic_file;
pub mod backend;
pub mod client;
pub mod definitions;
#[cfg(feature = "server")]
pub mod http;
pub mod limits_file;
pub mod model;
pub mod outage;
mod read_mostly;
pub mod registry;
#[cfg(feature = "cogni")]
pub mod runner;
pub mod service;
#[cfg(feature = "server")]
pub mod settings;
pub mod snapshot;
#[cfg(feature = "tigerbeetle")]
pub mod tigerbeetle;
