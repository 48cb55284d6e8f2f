//! The `ratelimiterd` HTTP API on actix-web: translation only (JSON in, validate, one call
//! into the service, JSON out).
//!
//! - [`server`]: routes ([`configure`]) and the listening server ([`bind`]).
//! - [`data`]: reserve/complete and their batch forms.
//! - [`admin`]: define, list and read limits.
//! - [`body`]: request bodies must be JSON objects.
//! - [`error`]: every failure as a status code and a JSON `{error, message}` body.
//! - [`openapi`]: the OpenAPI 3.1 document of all of the above, served at `/openapi.json`.

mod admin;
mod body;
mod data;
mod error;
pub mod openapi;
pub(crate) mod server;

pub use admin::{LimitList, OneLimit, PutLimitResponse};
pub use error::{ApiError, ErrorBody};
pub use server::{
    bind, configure, BoundServer, Health, HttpSettings, Ready, DEFAULT_MAX_BODY_BYTES,
};
