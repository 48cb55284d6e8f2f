//! Helpers shared by every integration test: time bounds, limit-definition builders, a real
//! HTTP server, the real `ratelimiterd` binary, headless Chromium, a reader of Prometheus
//! scrapes, the OpenAPI document, Cogni fixtures, a scripted limiter for the scheduler, and
//! (with the `tigerbeetle` feature) the library's throwaway TigerBeetle server and ledger looks,
//! and several instances on a three-replica cluster.

#[cfg(feature = "tigerbeetle")]
pub mod answers;
pub mod bound;
pub mod browser;
#[cfg(feature = "tigerbeetle")]
pub mod cluster;
pub mod cogni;
pub mod daemon;
pub mod exposition;
pub mod http;
pub mod limits;
pub mod openapi;
pub mod scheduler;
#[cfg(feature = "tigerbeetle")]
pub use ratelimiter::tigerbeetle::testing as tigerbeetle;
