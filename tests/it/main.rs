//! The integration tests: one test crate, one module per area, all sharing [`support`].
//! They use the library's public API (and the built binaries) only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod conformance;
mod support;

mod cli;
mod client_batcher;
mod client_e2e;
mod client_http;
mod client_local;
mod client_retry_cap;
mod client_scheduler;
mod client_scheduler_shutdown;
mod cogni_agent;
mod cogni_cli;
mod cogni_config;
mod cogni_limiter;
mod cogni_outage;
mod cogni_pool;
mod cogni_tools;
mod conformance_memory;
#[cfg(feature = "tigerbeetle")]
mod conformance_tigerbeetle;
mod exact_hints;
mod failed_define;
mod http_admin;
mod http_api;
mod http_invalid;
mod lease_capacity;
mod limits_page;
mod memory_shards;
mod metrics;
mod model_based;
mod openapi;
mod operations_binary;
#[cfg(feature = "tigerbeetle")]
mod outage_http;
mod outage_service;
mod reservation_snapshot;
mod scheduler_hints;
mod service_registry;
#[cfg(feature = "tigerbeetle")]
mod shared_definitions;
mod stress;
#[cfg(feature = "tigerbeetle")]
mod tigerbeetle_any_instance;
#[cfg(feature = "tigerbeetle")]
mod tigerbeetle_backend;
#[cfg(feature = "tigerbeetle")]
mod tigerbeetle_chaos;
#[cfg(feature = "tigerbeetle")]
mod tigerbeetle_cluster;
#[cfg(feature = "tigerbeetle")]
mod tigerbeetle_throughput;
