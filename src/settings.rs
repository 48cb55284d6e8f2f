//! Settings of the `ratelimiterd` server.
