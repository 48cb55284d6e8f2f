//! Where two callers' costs meet on the memory backend: reserve + complete of four keys in a
//! loop, from one caller thread and from two, with the two callers on the same four keys
//! (every op changes the same counters) or each on four keys of its own (one group per
//! caller, so each caller's keys share a shard; the two groups share one when they hash
//! there). With two arbiters or more it then runs one caller whose four keys share one
//! shard, and two callers whose keys each sit on a shard of their own (nothing shared but
//! the lease table): how throughput grows with cores when callers do not meet on a shard. Each case runs on a new service; ops/s and the ratio
//! to the one-caller case above it are printed.
//!
//! ```text
//! cargo run --release --example two_callers -- 1000000 1   # 1 M ops per caller, 1 arbiter
//! cargo run --release --example two_callers -- 1000000 4   # the same keys over 4 shards
//! ```
//!
//! Bounded: at most 10 000 000 ops per caller and 64 arbiters.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use ratelimiter::actors::{MemoryBackend, MemoryOptions};
use ratelimiter::model::{
    new_lease_id, Actual, CompleteCommand, LimitDefinition, Requirement, ReserveCommand,
    RetryPolicy, SystemClock,
};
use ratelimiter::service::LimiterService;

const MAX_OPS: usize = 10_000_000;
const MAX_ARBITERS: usize = 64;
const KEYS_PER_CALLER: usize = 4;

/// A service with `arbiters` shards whose lease table holds every lease of the case.
async fn service(arbiters: usize, leases: usize) -> Result<Arc<LimiterService>, Box<dyn Error>> {
    let options = MemoryOptions {
        lease_capacity: leases.max(1),
        arbiters,
    };
    let backend = MemoryBackend::start_with(Arc::new(SystemClock), RetryPolicy::default(), options);
    Ok(LimiterService::in_memory(backend).await?)
}

/// The keys of caller `set`, defined large enough never to deny.
async fn keys(service: &LimiterService, set: usize) -> Result<Vec<String>, Box<dyn Error>> {
    let keys: Vec<String> = (0..KEYS_PER_CALLER)
        .map(|k| format!("caller{set}:key{k}"))
        .collect();
    define(service, &keys).await?;
    Ok(keys)
}

/// Keys of caller `set` that all live on shard `shard` of `shards`: one group (the name up to
/// the last `:`), its name tried in turn until it hashes there; defined large enough never to
/// deny.
async fn keys_on_shard(
    service: &LimiterService,
    set: usize,
    shard: usize,
    shards: usize,
) -> Result<Vec<String>, Box<dyn Error>> {
    let group = (0..)
        .map(|g| format!("caller{set}group{g}"))
        .find(|group| MemoryBackend::shard_of(&format!("{group}:key"), shards) == shard)
        .ok_or("no group name hashes to the shard")?;
    let keys: Vec<String> = (0..KEYS_PER_CALLER)
        .map(|k| format!("{group}:key{k}"))
        .collect();
    define(service, &keys).await?;
    Ok(keys)
}

/// Defines `keys` large enough never to deny.
async fn define(service: &LimiterService, keys: &[String]) -> Result<(), Box<dyn Error>> {
    for key in keys {
        service
            .define(LimitDefinition::rolling(key.as_str(), u64::MAX / 2, 3600))
            .await?;
    }
    Ok(())
}

/// One caller's loop: `ops` reserve + complete on `keys`.
async fn caller(service: &LimiterService, keys: &[String], ops: usize) -> Result<(), String> {
    for _ in 0..ops {
        let lease = new_lease_id();
        let requirements = keys
            .iter()
            .map(|k| Requirement::new(k.as_str(), 100))
            .collect();
        let reserve = ReserveCommand::new(lease, requirements);
        let allowed = service.reserve_command(reserve).await;
        if !allowed.map_err(|e| e.to_string())?.allowed {
            return Err("a reserve was denied (the limits are meant never to deny)".into());
        }
        let actuals = keys.iter().map(|k| Actual::new(k.as_str(), 50)).collect();
        let complete = CompleteCommand::new(lease, actuals);
        if !service
            .complete_command(complete)
            .await
            .map_err(|e| e.to_string())?
            .ok
        {
            return Err("a complete was refused".into());
        }
    }
    Ok(())
}

/// Ops/s of one caller thread per key set, each making `ops` reserve + complete.
fn run(service: &Arc<LimiterService>, sets: Vec<Vec<String>>, ops: usize) -> Result<f64, String> {
    let start = Instant::now();
    let threads: Vec<_> = (sets.into_iter())
        .map(|keys| {
            let service = Arc::clone(service);
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async move { caller(&service, &keys, ops).await })
            })
        })
        .collect();
    let callers = threads.len();
    for thread in threads {
        thread.join().map_err(|_| "a caller thread panicked")??;
    }
    Ok((ops * callers) as f64 / start.elapsed().as_secs_f64())
}

fn main() {
    if let Err(error) = measure() {
        eprintln!("two_callers: {error}");
        std::process::exit(2);
    }
}

/// Runs the three cases and prints their table.
fn measure() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: two_callers [OPS_PER_CALLER (1..=10000000)] [ARBITERS (1..=64)]";
    let number = |at: usize, default: usize, max: usize| -> Result<usize, Box<dyn Error>> {
        match args.get(at) {
            None => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("{usage} (got {text:?})").into()),
            },
        }
    };
    let ops = number(0, 1_000_000, MAX_OPS)?;
    let arbiters = number(1, 1, MAX_ARBITERS)?;
    actix_rt::System::new().block_on(async move {
        println!("{ops} ops per caller, {arbiters} arbiter(s), {KEYS_PER_CALLER} keys per op");
        println!("callers  keys               ops/s  vs one caller");
        let one = {
            let service = service(arbiters, 2 * ops).await?;
            let sets = vec![keys(&service, 0).await?];
            run(&service, sets, ops)?
        };
        println!("1        -         {one:>12.0}           1.00");
        for (label, shared) in [("shared", true), ("separate", false)] {
            let service = service(arbiters, 4 * ops).await?;
            let first = keys(&service, 0).await?;
            let second = if shared {
                first.clone()
            } else {
                keys(&service, 1).await?
            };
            let two = run(&service, vec![first, second], ops)?;
            println!("2        {label:<9} {two:>12.0}  {:>13.2}", two / one);
        }
        if arbiters >= 2 {
            // Each caller's keys on a shard of its own; the reference is one caller whose
            // keys share one shard too.
            let single = service(arbiters, 2 * ops).await?;
            let sets = vec![keys_on_shard(&single, 0, 0, arbiters).await?];
            let one = run(&single, sets, ops)?;
            println!("1        one shard {one:>12.0}           1.00");
            let pair = service(arbiters, 4 * ops).await?;
            let sets = vec![
                keys_on_shard(&pair, 0, 0, arbiters).await?,
                keys_on_shard(&pair, 1, 1, arbiters).await?,
            ];
            let two = run(&pair, sets, ops)?;
            println!("2        own shard {two:>12.0}  {:>13.2}", two / one);
        }
        Ok(())
    })
}
