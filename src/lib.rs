//! `ratelimiter`: the shared rate-limit layer for LLM-heavy programs.
//!
//! - [`model`]: plain domain data (definitions, API types, retry policy, leases, clock).
//! - [`limits_file`]: the limits file format, the one validator of limit states.
//! - [`registry`]: the JSON registry file with atomic saves.
//! - [`backend`]: the storage trait both backends implement.
//! - [`actors`]: the in-memory backend as actors (one per key), the decrease applier.
//! - [`service`]: the limiter service: control plane (definitions) and data plane (reserve/complete).
//! - [`http`]: the `ratelimiterd` HTTP API.
//! - [`client`]: the client library (Limiter trait, clients, batcher, scheduler).
//! - [`runner`]: Cogni, the repository question evaluator.

pub mod actors;
pub mod backend;
pub mod client;
pub mod http;
pub mod limits_file;
pub mod model;
pub mod registry;
pub mod runner;
pub mod service;
pub mod settings;
#[cfg(feature = "tigerbeetle")]
pub mod tigerbeetle;
