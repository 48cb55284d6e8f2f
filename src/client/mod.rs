//! The client library: the [`Limiter`] trait and its implementations, the batcher and the
//! scheduler.

pub mod limiter;

pub use limiter::{Limiter, LimiterError, NoopLimiter};
