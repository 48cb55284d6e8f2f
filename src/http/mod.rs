//! The `ratelimiterd` HTTP API on actix-web: translation only (JSON in, validate, one call
//! into the service, JSON out).
//!
//! - [`server`]: routes ([`configure`]) and the listening server ([`bind`]).
//! - [`data`]: reserve/complete and their batch forms.
//! - [`admin`]: define, list and read limits.
//! - [`page`]: the live limits page at `GET /`.
//! - [`body`]: request bodies must be JSON objects.
//! - [`error`]: every failure as a status code and a JSON `{error, message}` body.
//! - `metrics`: `GET /metrics` (Prometheus), outcome counters, the request timer.
//! - [`huge_pages`]: transparent huge pages off for the server processes.
//! - [`openapi`]: the OpenAPI 3.1 document of all of the above, served at `/openapi.json`.

mod admin;
mod body;
mod data;
mod error;
pub mod huge_pages;
mod metrics;
pub mod openapi;
mod page;
pub(crate) mod server;

pub use admin::{LimitList, OneLimit, PutLimitResponse};
pub use error::{ApiError, ErrorBody};
pub use metrics::{
    outcome, time_request, ApiMetrics, MetricsError, DURATION_BUCKETS, UNMATCHED_ROUTE,
};
pub use server::{
    bind, configure, BoundServer, Health, HttpSettings, Ready, DEFAULT_MAX_BODY_BYTES,
};
