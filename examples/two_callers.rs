//! Where two callers' costs meet on the memory backend: reserve + complete of four keys in a
//! loop, from one caller thread and from two. The two callers are on the same four keys
//! (every op changes the same counters), on four keys each in one shard (one group each,
//! both groups on one shard: they take turns on its lock), or on four keys each in a shard
//! of its own (nothing shared but the lease table): how throughput grows with cores when
//! callers do not meet on a shard. Each case runs on a new service; ops/s and the ratio to
//! the one-caller case are printed.
//!
//! ```text
//! cargo run --release --example two_callers -- 1000000 1      # 1 M ops per caller, 1 arbiter
//! cargo run --release --example two_callers -- 1000000 2 16   # 2 arbiters, 16 shards
//! ```
//!
//! Bounded: at most 10 000 000 ops per caller, 64 arbiters and 4096 shards.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use ratelimiter::actors::{default_shards, MemoryBackend, MemoryOptions};
use ratelimiter::model::{
    new_lease_id, Actual, CompleteCommand, LimitDefinition, Requirement, ReserveCommand,
    RetryPolicy, SystemClock,
};
use ratelimiter::service::LimiterService;

const MAX_OPS: usize = 10_000_000;
const MAX_ARBITERS: usize = 64;
const MAX_SHARDS: usize = 4096;
const KEYS_PER_CALLER: usize = 4;

/// The layout of the services measured.
#[derive(Clone, Copy)]
struct Layout {
    arbiters: usize,
    shards: usize,
}

/// A service laid out by `layout` whose lease table holds every lease of the case.
async fn service(layout: Layout, leases: usize) -> Result<Arc<LimiterService>, Box<dyn Error>> {
    let options = MemoryOptions {
        lease_capacity: leases.max(1),
        arbiters: layout.arbiters,
        shards: layout.shards,
    };
    let backend = MemoryBackend::start_with(Arc::new(SystemClock), RetryPolicy::default(), options);
    Ok(LimiterService::in_memory(backend).await?)
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

/// Runs the cases and prints their table.
fn measure() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: two_callers [OPS_PER_CALLER (1..=10000000)] [ARBITERS (1..=64)] \
                 [SHARDS (1..=4096)]";
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
    let layout = Layout {
        arbiters: number(1, 1, MAX_ARBITERS)?,
        shards: number(2, default_shards(), MAX_SHARDS)?,
    };
    let shards = layout.shards;
    actix_rt::System::new().block_on(async move {
        println!(
            "{ops} ops per caller, {} arbiter(s), {shards} shard(s), {KEYS_PER_CALLER} keys per op",
            layout.arbiters
        );
        println!("callers  keys               ops/s  vs one caller");
        let one = {
            let service = service(layout, 2 * ops).await?;
            let sets = vec![keys_on_shard(&service, 0, 0, shards).await?];
            run(&service, sets, ops)?
        };
        println!("1        -         {one:>12.0}           1.00");
        // The second caller's keys: the first caller's own (`None`), or a group of its own
        // on the shard given.
        let mut cases = vec![("shared", None), ("one shard", Some(0))];
        if shards >= 2 {
            cases.push(("own shard", Some(1)));
        }
        for (label, second_shard) in cases {
            let service = service(layout, 4 * ops).await?;
            let first = keys_on_shard(&service, 0, 0, shards).await?;
            let second = match second_shard {
                None => first.clone(),
                Some(shard) => keys_on_shard(&service, 1, shard, shards).await?,
            };
            let two = run(&service, vec![first, second], ops)?;
            println!("2        {label:<9} {two:>12.0}  {:>13.2}", two / one);
        }
        Ok(())
    })
}
