//! Limit-definition builders shared by the tests.

use ratelimiter::actors::{MemoryBackend, MemoryOptions};
use ratelimiter::model::{LeaseId, LimitDefinition, LimitKind};

/// A rolling definition with a window in seconds.
pub fn rolling(key: &str, capacity: u64, window_seconds: u64) -> LimitDefinition {
    LimitDefinition::rolling(key, capacity, window_seconds)
}

/// A concurrency definition with a timeout in seconds.
pub fn concurrency(key: &str, capacity: u64, timeout_seconds: u64) -> LimitDefinition {
    LimitDefinition::concurrency(key, capacity, timeout_seconds)
}

/// A definition of `kind` whose window (rolling) or timeout (concurrency) is `seconds`.
pub fn of_kind(key: &str, kind: LimitKind, capacity: u64, seconds: u64) -> LimitDefinition {
    LimitDefinition::of_kind(key, kind, capacity, seconds)
}

/// A key unique to this run under `prefix`, so tests sharing one backend (TigerBeetle)
/// never mix their limits.
pub fn unique_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:{}:{name}", LeaseId::new())
}

/// Options whose key shards put `keys` on two different arbiters (two arbiters, and the
/// fewest shards from 2 up that spread the keys' groups over both), so multi-key reserves
/// cross arbiters (threads).
pub fn spread_over_arbiters(keys: &[String]) -> MemoryOptions {
    let arbiters = 2;
    let shards = (2..=64)
        .find(|&n| {
            let on: std::collections::HashSet<_> = (keys.iter())
                .map(|k| MemoryBackend::shard_of(k, n) % arbiters)
                .collect();
            on.len() > 1
        })
        .expect("some shard count spreads the keys over both arbiters");
    MemoryOptions {
        arbiters,
        shards,
        ..MemoryOptions::default()
    }
}
