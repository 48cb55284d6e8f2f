//! Helpers shared by every integration test: time bounds, limit-definition builders, a real
//! HTTP server, Cogni fixtures, a scripted limiter for the scheduler, and (with the
//! `tigerbeetle` feature) a TigerBeetle server started by the tests.

pub mod bound;
pub mod cogni;
pub mod http;
pub mod limits;
pub mod scheduler;
#[cfg(feature = "tigerbeetle")]
pub mod tigerbeetle;
