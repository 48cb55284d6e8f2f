//! The client library: the `Limiter` trait and its implementations, the batcher and the
//! scheduler.
