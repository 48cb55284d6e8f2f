//! The `ratelimiterd` HTTP API on actix-web: translation only (JSON in, validate, one call
//! into the service, JSON out).
