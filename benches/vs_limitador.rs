//! In process, against limitador: ratelimiter's `LimiterService` reserve + complete (as
//! commands: the lease id is not turned into text and back) through
//! the memory backend (1 and 4 keys; 0, 1 and 2 arbiters — 0 keeps the shard on the caller's
//! own thread, measured with one caller) and limitador 0.14's in-memory
//! `reserve` + `commit_reservation` (1 and 4 limits), from one caller and from two OS threads
//! at once, all in one run. limitador's calls are synchronous: each caller thread makes one
//! at a time. Ours are futures: each caller thread runs 1 (sequential, like limitador) or
//! `IN_FLIGHT` ops at once (an async program's many concurrent tasks). Each case alternates
//! the two sides in `ROUNDS` rounds and prints medians: ops/s (one op = one reserve and its
//! complete/commit) and the ratio taken within each round. Numbers go to BENCHMARKS.md.
//!
//! Ours runs with the default sixteen key shards. Then scaling: one and two callers, each
//! on four keys of its own (its own model and tenant), with ours on one shard for all, and
//! on sixteen (a shard per caller) at 1 and 2 arbiters, and limitador with a namespace per
//! caller.
//!
//! Usage: `cargo bench --bench vs_limitador [-- SECONDS_PER_CASE] [--keys N | --scaling]`
//! (default 2 s per case and side; `--keys 1` or `--keys 4` runs only those cases, e.g.
//! under a profiler; `--scaling` only the scaling table).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use limitador::limit::{Context, Expression, Limit, Namespace, Predicate};
use limitador::RateLimiter;
use ratelimiter::actors::{default_shards, MemoryBackend, MemoryOptions};
use ratelimiter::model::{new_lease_id, Actual, CompleteCommand, Requirement, ReserveCommand};
use ratelimiter::service::LimiterService;

mod support;

use support::KEYS;

/// OS threads of the concurrent cases, the same on both sides.
const THREADS: usize = 2;

/// Rounds of each case: limitador and ours alternate, each measured for a share of the
/// case's time; medians are reported.
const ROUNDS: usize = 3;

/// Ops each of our caller threads keeps in flight in the concurrent cases.
const IN_FLIGHT: usize = 64;

/// Ours, with a lease table large enough for every lease a case makes.
async fn service(arbiters: usize, shards: usize) -> Arc<LimiterService> {
    support::service(MemoryOptions {
        lease_capacity: 4_000_000,
        arbiters,
        shards,
    })
    .await
}

/// One reserve + complete on `keys` keys, as a program that embeds the service makes them:
/// a new lease id and new requirements each time, handed over with the id as it is made.
async fn ratelimiter_op(service: &LimiterService, keys: &'static [&'static str]) {
    let lease = new_lease_id();
    let requirements = keys
        .iter()
        .map(|k| Requirement::static_key(k, 100))
        .collect();
    let reserve = ReserveCommand::new(lease, requirements);
    assert!(
        service
            .reserve_command(reserve)
            .await
            .expect("valid")
            .allowed
    );
    let actuals = keys.iter().map(|k| Actual::static_key(k, 50)).collect();
    let complete = CompleteCommand::new(lease, actuals);
    assert!(service.complete_command(complete).await.expect("valid").ok);
}

/// Ops done by one caller thread: `in_flight` loops of reserve + complete until `run` has
/// passed since `start`.
async fn caller_ops(
    service: &LimiterService,
    keys: &'static [&'static str],
    in_flight: usize,
    start: Instant,
    run: Duration,
) -> u64 {
    let caller = || async {
        let mut ops = 0u64;
        while start.elapsed() < run {
            for _ in 0..64 {
                ratelimiter_op(service, keys).await;
            }
            ops += 64;
        }
        ops
    };
    futures::future::join_all((0..in_flight).map(|_| caller()))
        .await
        .into_iter()
        .sum()
}

/// Ops/s of one caller per set of keys in `key_sets`, each on its own thread and actix
/// System with `in_flight` ops at a time, sharing one service (built on the calling System,
/// which keeps running meanwhile).
async fn ratelimiter_ops(
    service: Arc<LimiterService>,
    key_sets: Vec<&'static [&'static str]>,
    in_flight: usize,
    run: Duration,
) -> f64 {
    let start = Instant::now();
    let mut done = Vec::new();
    for keys in key_sets {
        let service = Arc::clone(&service);
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            let ops = actix_rt::System::new()
                .block_on(async move { caller_ops(&service, keys, in_flight, start, run).await });
            let _ = tx.send(ops);
        });
        done.push(rx);
    }
    let mut ops = 0;
    for rx in done {
        ops += rx.await.expect("caller thread finished");
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

/// limitador's in-memory limiter with `limits` limits in each of `namespaces` namespaces
/// (`bench0`, `bench1`, ...), every one applying to every request of its namespace (no
/// conditions, no variables): `limits` counters per request.
fn limitador(limits: usize, namespaces: usize) -> Arc<RateLimiter> {
    let limiter = RateLimiter::new(10_000);
    for namespace in 0..namespaces {
        for i in 0..limits {
            limiter.add_limit(Limit::with_id(
                format!("limit{i}"),
                format!("bench{namespace}"),
                u64::MAX / 2,
                3600,
                Vec::<Predicate>::new(),
                Vec::<Expression>::new(),
            ));
        }
    }
    Arc::new(limiter)
}

/// Ops/s of `threads` callers of one limitador, each a reserve and its commit; caller `t`
/// uses namespace `bench{t % namespaces}`.
fn limitador_ops(
    limiter: &Arc<RateLimiter>,
    threads: usize,
    namespaces: usize,
    run: Duration,
) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let limiter = Arc::clone(limiter);
            std::thread::spawn(move || {
                let namespace = Namespace::from(format!("bench{}", thread % namespaces));
                let ctx = Context::default();
                let mut ops = 0u64;
                while start.elapsed() < run {
                    for _ in 0..64 {
                        let reserved = limiter
                            .reserve(&namespace, &ctx, 100, None)
                            .expect("reserve");
                        assert!(!reserved.limited);
                        limiter
                            .commit_reservation(
                                &namespace,
                                &ctx,
                                reserved.reservation_id.as_ref(),
                                50,
                            )
                            .expect("commit");
                    }
                    ops += 64;
                }
                ops
            })
        })
        .collect();
    let ops: u64 = handles.into_iter().map(|h| h.join().expect("caller")).sum();
    ops as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut secs = 2.0;
    let mut key_counts = vec![1usize, 4];
    let mut with_scaling = true;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--keys" => {
                let n = rest.next().and_then(|n| n.parse().ok());
                key_counts = vec![n
                    .filter(|n| [1, 4].contains(n))
                    .expect("--keys 1 or --keys 4")];
                with_scaling = false;
            }
            "--scaling" => key_counts.clear(),
            // cargo bench passes `--bench`.
            flag if flag.starts_with("--") => {}
            seconds => secs = seconds.parse().expect("seconds per case"),
        }
    }
    let run = Duration::from_secs_f64(secs);
    println!(
        "{secs} s per case and side, in {ROUNDS} alternating rounds (medians); one op = one \
         reserve and its complete (commit)"
    );
    if !key_counts.is_empty() {
        println!(
            "{:<5} {:<8} {:<10} {:>10} {:>14} {:>12} {:>12} {:>8} {:>8} {:>8}",
            "keys",
            "callers",
            "in flight",
            "limitador",
            "ours, 0 arb.",
            "ours, 1 arb.",
            "ours, 2 arb.",
            "ratio 0",
            "ratio 1",
            "ratio 2"
        );
    }
    let system = actix_rt::System::new();
    // Each row alternates limitador and ours ROUNDS times (a share of the case's time each)
    // and reports medians: a ratio is taken within one round, so a slow moment of this
    // shared machine weighs on both sides of it.
    let round = run.div_f64(ROUNDS as f64);
    for &keys in &key_counts {
        for threads in [1usize, THREADS] {
            for in_flight in [1usize, IN_FLIGHT] {
                let mut rounds = Vec::new();
                for _ in 0..ROUNDS {
                    let reference = limitador_ops(&limitador(keys, 1), threads, 1, round);
                    // 0 arbiters: the shard runs on the System that built the service; with
                    // one caller, that caller runs there too, so no op crosses a thread.
                    let here = (threads == 1).then(|| {
                        system.block_on(async {
                            let service = service(0, default_shards()).await;
                            let start = Instant::now();
                            let keys = &KEYS[..keys];
                            let ops = caller_ops(&service, keys, in_flight, start, round).await;
                            ops as f64 / start.elapsed().as_secs_f64()
                        })
                    });
                    let mut ours = [here, None, None];
                    for arbiters in [1usize, 2] {
                        ours[arbiters] = Some(system.block_on(async {
                            let service = service(arbiters, default_shards()).await;
                            let key_sets = vec![&KEYS[..keys]; threads];
                            ratelimiter_ops(service, key_sets, in_flight, round).await
                        }));
                    }
                    rounds.push((reference, ours));
                }
                let reference = median(rounds.iter().map(|(r, _)| *r));
                let cells: Vec<(String, String)> = (0..3)
                    .map(|i| match column(&rounds, i) {
                        (Some(ops), Some(ratio)) => (format!("{ops:.0}"), format!("{ratio:.2}")),
                        _ => ("-".to_string(), "-".to_string()),
                    })
                    .collect();
                println!(
                    "{:<5} {:<8} {:<10} {:>10.0} {:>14} {:>12} {:>12} {:>8} {:>8} {:>8}",
                    keys,
                    threads,
                    in_flight,
                    reference.unwrap_or(0.0),
                    cells[0].0,
                    cells[1].0,
                    cells[2].0,
                    cells[0].1,
                    cells[1].1,
                    cells[2].1
                );
            }
        }
    }
    if with_scaling {
        scaling(&system, round);
    }
}

/// The four keys of caller `caller` in the scaling case: a model and a tenant of its own,
/// named so that with the default shard count both groups sit on shard `caller` (with
/// hashed names, two callers would share a shard one time in sixteen).
fn own_keys(caller: usize) -> &'static [&'static str] {
    let on_shard =
        |group: &String| MemoryBackend::shard_of(&format!("{group}:x"), default_shards()) == caller;
    let named = |prefix: String| (0..).map(|i| format!("{prefix}{i}")).find(on_shard);
    let model = named(format!("global:llm:openai:model-{caller}-")).expect("a model name");
    let tenant = named(format!("tenant:caller{caller}-")).expect("a tenant name");
    let keys = [
        format!("{model}:rpm"),
        format!("{model}:tpm"),
        format!("{model}:concurrency"),
        format!("{tenant}:daily_tokens"),
    ];
    Box::leak(Box::new(keys.map(|key| &*Box::leak(key.into_boxed_str()))))
}

/// The layouts of ours in the scaling table: (arbiters, shards), the default being 16.
fn scaling_layouts() -> [(usize, usize); 3] {
    [(1, 1), (1, default_shards()), (2, default_shards())]
}

/// Scaling: one and `THREADS` callers, each on four keys of its own (its own model and
/// tenant), with ours on one shard for all, and on sixteen shards (a shard per caller) over
/// 1 and 2 arbiters; limitador with each caller in a namespace of its own. What a second
/// core adds when callers do not share counters.
fn scaling(system: &actix_rt::SystemRunner, round: Duration) {
    let layouts = scaling_layouts();
    let label = |(arbiters, shards): (usize, usize)| format!("{arbiters} arb./{shards} sh.");
    println!();
    println!("Scaling: each caller on 4 keys of its own (its own model and tenant)");
    println!(
        "{:<8} {:<10} {:>10} {:>14} {:>14} {:>14} {:>8} {:>8} {:>8}",
        "callers",
        "in flight",
        "limitador",
        label(layouts[0]),
        label(layouts[1]),
        label(layouts[2]),
        "ratio a",
        "ratio b",
        "ratio c"
    );
    let key_sets: Vec<_> = (0..THREADS).map(own_keys).collect();
    let mut by_callers = Vec::new();
    for in_flight in [1usize, IN_FLIGHT] {
        for threads in [1usize, THREADS] {
            let mut rounds = Vec::new();
            for _ in 0..ROUNDS {
                let limiter = limitador(4, THREADS);
                let reference = limitador_ops(&limiter, threads, THREADS, round);
                let ours = layouts.map(|(arbiters, shards)| {
                    Some(system.block_on(async {
                        let service = service(arbiters, shards).await;
                        for keys in &key_sets {
                            support::define(&service, keys).await;
                        }
                        let sets = key_sets[..threads].to_vec();
                        ratelimiter_ops(service, sets, in_flight, round).await
                    }))
                });
                rounds.push((reference, ours));
            }
            let reference = median(rounds.iter().map(|(r, _)| *r)).unwrap_or(0.0);
            let cells = [0, 1, 2].map(|i| column(&rounds, i));
            let ops = cells.map(|(ops, _)| ops.unwrap_or(0.0));
            let ratios = cells.map(|(_, ratio)| ratio.unwrap_or(0.0));
            println!(
                "{:<8} {:<10} {:>10.0} {:>14.0} {:>14.0} {:>14.0} {:>8.2} {:>8.2} {:>8.2}",
                threads,
                in_flight,
                reference,
                ops[0],
                ops[1],
                ops[2],
                ratios[0],
                ratios[1],
                ratios[2]
            );
            by_callers.push((reference, ops));
        }
    }
    for (pair, in_flight) in by_callers.chunks(2).zip([1, IN_FLIGHT]) {
        if let [(one_ref, one), (two_ref, two)] = pair {
            let growth: Vec<String> = (layouts.iter().zip(one.iter().zip(two)))
                .map(|(&layout, (one, two))| format!("{} {:.2}", label(layout), two / one))
                .collect();
            println!(
                "{THREADS} callers / 1, {in_flight} in flight: limitador {:.2}, ours {}",
                two_ref / one_ref,
                growth.join(", ")
            );
        }
    }
}

/// Column `i` of rounds that each measured the reference and ours in some layouts: the
/// median of ours' ops/s, and the median of its ratio to the reference taken within each
/// round (so a slow moment of this shared machine weighs on both sides of a ratio). `None`
/// where the column was not measured.
fn column<const N: usize>(
    rounds: &[(f64, [Option<f64>; N])],
    i: usize,
) -> (Option<f64>, Option<f64>) {
    let ops = median(rounds.iter().filter_map(|(_, o)| o[i]));
    let ratio = median(rounds.iter().filter_map(|(r, o)| o[i].map(|o| o / r)));
    (ops, ratio)
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}
