//! In-process throughput of the TigerBeetle backend (BENCHMARKS.md, "Issue #11: TigerBeetle
//! throughput"): many concurrent callers reserve four keys each through `LimiterService` and
//! `TigerBeetleBackend` against a running TigerBeetle, for a fixed time. Prints one line:
//! `reserves=<n> transfers_per_s=<n> batches=<n> sessions=<n> largest=<n>` (one transfer
//! per key of a reserve; every reserve must be allowed, the limits never deny).
//!
//! Usage: in_process ADDRESSES SECONDS CALLERS SESSIONS [BATCH_MAX_EVENTS]
//! (scripts/tigerbeetle-bench.sh runs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use ratelimiter::model::{
    LeaseId, LimitDefinition, LimitKind, Requirement, ReserveRequest, RetryPolicy, SystemClock,
};
use ratelimiter::service::LimiterService;
use ratelimiter::tigerbeetle::{TigerBeetleBackend, TigerBeetleSettings};

/// The four keys of one LLM call, as in the HTTP benchmark's limits file.
const KEYS: [(&str, LimitKind, u64); 4] = [
    ("bench:inproc:rpm", LimitKind::Rolling, 1),
    ("bench:inproc:tpm", LimitKind::Rolling, 600),
    ("bench:inproc:concurrency", LimitKind::Concurrency, 1),
    ("bench:inproc:tenant_tokens", LimitKind::Rolling, 600),
];

fn arg<T: std::str::FromStr>(args: &[String], index: usize, name: &str) -> T {
    args.get(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!(
                "usage: in_process ADDRESSES SECONDS CALLERS SESSIONS [BATCH_MAX_EVENTS] \
                 ({name} missing or invalid)"
            );
            std::process::exit(2)
        })
}

#[actix_rt::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addresses: String = arg(&args, 0, "ADDRESSES");
    let seconds: u64 = arg(&args, 1, "SECONDS");
    let callers: usize = arg(&args, 2, "CALLERS");
    let sessions: usize = arg(&args, 3, "SESSIONS");
    let batch_max_events: usize = if args.len() > 4 {
        arg(&args, 4, "BATCH_MAX_EVENTS")
    } else {
        TigerBeetleSettings::default().batch_max_events
    };
    let config = TigerBeetleSettings {
        addresses,
        sessions,
        batch_max_events,
        ..TigerBeetleSettings::default()
    };
    let backend =
        TigerBeetleBackend::connect(config, Arc::new(SystemClock), RetryPolicy::default())
            .await
            .expect("TigerBeetle backend connects");
    let service = LimiterService::in_memory(backend.clone())
        .await
        .expect("service starts");
    for (key, kind, _) in KEYS {
        // Windows long enough that nothing expires during a run; capacity never denies.
        service
            .define(LimitDefinition::of_kind(key, kind, u64::MAX / 4, 3600))
            .await
            .expect("limit defined");
    }
    let before = backend.batch_stats().await.expect("stats");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let loops = (0..callers).map(|_| {
        let (service, stop) = (service.clone(), stop.clone());
        async move {
            let mut allowed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let requirements = KEYS
                    .iter()
                    .map(|(key, _, amount)| Requirement::new(*key, *amount))
                    .collect();
                let answer = service
                    .reserve(&ReserveRequest::new(LeaseId::new(), requirements))
                    .await
                    .expect("valid request");
                assert!(answer.allowed, "a reserve was not allowed: {answer:?}");
                allowed += 1;
            }
            allowed
        }
    });
    let timer = {
        let stop = stop.clone();
        async move {
            actix_rt::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
        }
    };
    let (counts, ()) = futures::join!(join_all(loops), timer);
    let elapsed = started.elapsed().as_secs_f64();
    let reserves: u64 = counts.iter().sum();
    let stats = backend.batch_stats().await.expect("stats");
    println!(
        "reserves={reserves} transfers_per_s={:.0} batches={} sessions={} largest={}",
        (reserves * KEYS.len() as u64) as f64 / elapsed,
        stats.batches - before.batches,
        stats.sessions,
        stats.largest
    );
}
