//! Memory cost of live reservations on the memory backend: creates N reservations through
//! `LimiterService` (none completed, all within their window), then reads this process's
//! resident set size (`VmRSS` in `/proc/self/status`, Linux) before and after. As a
//! reference measured in the same run, it then fills a bare `HashMap<Ulid, (u64, i64)>`
//! (lease id → amount, expiry: the least any index of N holds needs) with one entry per hold.
//!
//! ```text
//! cargo run --release --example lease_memory -- 1000000 1   # 1 M leases, one key each
//! cargo run --release --example lease_memory -- 1000000 4   # 1 M leases, four keys each
//! ```
//!
//! Bounded: at most 5 000 000 leases and 32 keys per lease; it stops after 10 minutes.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{LimitDefinition, Requirement, ReserveRequest, RetryPolicy, SystemClock};
use ratelimiter::service::LimiterService;

const MAX_LEASES: usize = 5_000_000;
const MAX_KEYS: usize = 32;
/// Reserves sent together, so the actors always have work queued.
const IN_FLIGHT: usize = 512;
const TIME_BOUND: Duration = Duration::from_secs(600);

/// This process's resident set size in bytes.
fn rss_bytes() -> Result<u64, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/self/status (Linux only)")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}

fn arg(args: &[String], index: usize, default: usize, max: usize) -> Result<usize, Box<dyn Error>> {
    let value = match args.get(index) {
        Some(text) => text
            .parse()
            .map_err(|e| format!("argument {index} ({text:?}): {e}"))?,
        None => default,
    };
    if value == 0 || value > max {
        return Err(format!("argument {index} must be within 1..={max}, got {value}").into());
    }
    Ok(value)
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let leases = arg(&args, 1, 1_000_000, MAX_LEASES)?;
    let keys_per_lease = arg(&args, 2, 1, MAX_KEYS)?;
    let backend = MemoryBackend::start_with_lease_capacity(
        Arc::new(SystemClock),
        RetryPolicy::default(),
        leases,
    );
    let service = LimiterService::in_memory(backend).await?;
    // Key names as long as real ones (`global:llm:<provider>:<model>:tpm`).
    let keys: Vec<String> = (0..keys_per_lease)
        .map(|i| format!("global:llm:provider:model-{i:02}:tpm"))
        .collect();
    for key in &keys {
        service
            .define(LimitDefinition::rolling(key, leases as u64, 3600))
            .await?;
    }
    let requirements: Vec<Requirement> = keys
        .iter()
        .map(|key| Requirement {
            key: key.clone().into(),
            amount: 1,
        })
        .collect();
    let before = rss_bytes()?;
    let started = Instant::now();
    let mut made = 0;
    while made < leases {
        if started.elapsed() > TIME_BOUND {
            return Err(format!("stopped after {TIME_BOUND:?} with {made} leases").into());
        }
        let chunk = IN_FLIGHT.min(leases - made);
        let requests: Vec<ReserveRequest> = (0..chunk)
            .map(|_| ReserveRequest {
                lease_id: ulid::Ulid::new().to_string(),
                job_id: None,
                requirements: requirements.clone(),
            })
            .collect();
        let answers = join_all(requests.iter().map(|r| service.reserve(r))).await;
        for answer in answers {
            let answer = answer?;
            if !answer.allowed {
                return Err(format!("reserve {made} was not allowed: {answer:?}").into());
            }
        }
        made += chunk;
    }
    let elapsed = started.elapsed();
    let after = rss_bytes()?;
    let grown = after.saturating_sub(before);
    let holds = leases * keys_per_lease;
    let reference = {
        let mut map = std::collections::HashMap::new();
        for i in 0..holds {
            map.insert(ulid::Ulid::new(), (1u64, i as i64));
        }
        let bytes = rss_bytes()?.saturating_sub(after);
        drop(map);
        bytes
    };
    println!("leases: {leases}, keys per lease: {keys_per_lease} ({holds} holds)");
    println!("created in {:.1} s", elapsed.as_secs_f64());
    println!(
        "VmRSS: {:.1} MiB before, {:.1} MiB after",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    println!(
        "per live lease: {} bytes; per hold: {} bytes",
        grown / leases as u64,
        grown / holds as u64
    );
    println!(
        "reference HashMap<Ulid, (u64, i64)>: {} bytes per hold; ratio {:.1}",
        reference / holds as u64,
        grown as f64 / reference.max(1) as f64
    );
    Ok(())
}
