//! Concurrent stress test: many tasks on several threads hammer real actors (manual clock,
//! no sleeps). Safety: holders of a concurrency key never exceed its capacity, and the
//! rolling key never grants more than its capacity within one window. Progress: every task
//! finishes and the keys are used to capacity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::limits::{of_kind, spread_over_arbiters};
use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{
    new_lease_id, Actual, CompleteRequest, LimitKind, ManualClock, Requirement, ReserveRequest,
    RetryPolicy,
};
use ratelimiter::service::LimiterService;

const CONCURRENCY_CAP: u64 = 3;
const ROLLING_CAP: u64 = 150;
const THREADS: usize = 4;
const TASKS_PER_THREAD: usize = 25;
/// Most rounds a task makes; it stops earlier once the rolling key is used up (how many
/// rounds that takes depends on how the threads interleave, not on the limiter).
const MAX_ROUNDS: usize = 2_000;

#[derive(Default)]
struct Counters {
    holders: AtomicU64,
    max_holders: AtomicU64,
    allowed: AtomicU64,
    rolling_granted: AtomicU64,
}

async fn worker(service: Arc<LimiterService>, counters: Arc<Counters>) {
    for round in 0..MAX_ROUNDS {
        if counters.rolling_granted.load(Ordering::SeqCst) >= ROLLING_CAP - 2 {
            break;
        }
        let amount = 1 + (round as u64 % 3);
        let lease = new_lease_id();
        let request = ReserveRequest::new(
            lease,
            vec![Requirement::new("conc", 1), Requirement::new("tpm", amount)],
        );
        let answer = service.reserve(&request).await.expect("valid");
        if answer.allowed {
            let now = counters.holders.fetch_add(1, Ordering::SeqCst) + 1;
            counters.max_holders.fetch_max(now, Ordering::SeqCst);
            counters.allowed.fetch_add(1, Ordering::SeqCst);
            counters.rolling_granted.fetch_add(amount, Ordering::SeqCst);
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            counters.holders.fetch_sub(1, Ordering::SeqCst);
            let complete = CompleteRequest::new(lease, vec![Actual::new("tpm", amount)]);
            assert!(service.complete(&complete).await.expect("valid").ok);
        } else {
            tokio::task::yield_now().await;
        }
    }
}

#[actix_rt::test]
async fn many_tasks_on_many_threads_keep_every_limit() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let clock = ManualClock::new(0);
        let backend = MemoryBackend::start_with(
            clock.clone(),
            RetryPolicy::default(),
            spread_over_arbiters(&["conc".to_string(), "tpm".to_string()]),
        );
        let service = LimiterService::in_memory(backend).await.unwrap();
        service
            .define(of_kind(
                "conc",
                LimitKind::Concurrency,
                CONCURRENCY_CAP,
                3600,
            ))
            .await
            .unwrap();
        service
            .define(of_kind("tpm", LimitKind::Rolling, ROLLING_CAP, 3600))
            .await
            .unwrap();
        let counters = Arc::new(Counters::default());

        let arbiters: Vec<_> = (0..THREADS).map(|_| actix_rt::Arbiter::new()).collect();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        for arbiter in &arbiters {
            for _ in 0..TASKS_PER_THREAD {
                let (service, counters, done) =
                    (service.clone(), counters.clone(), done_tx.clone());
                arbiter.spawn(async move {
                    worker(service, counters).await;
                    let _ = done.send(());
                });
            }
        }
        let mut finished = 0;
        while finished < THREADS * TASKS_PER_THREAD {
            match done_rx.try_recv() {
                Ok(()) => finished += 1,
                Err(_) => {
                    let usage = service.get("conc").await.unwrap().unwrap().usage;
                    assert!(
                        usage.in_use <= CONCURRENCY_CAP,
                        "concurrency over capacity: {usage:?}"
                    );
                    let usage = service.get("tpm").await.unwrap().unwrap().usage;
                    assert!(
                        usage.in_use <= ROLLING_CAP,
                        "rolling over capacity: {usage:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        for arbiter in arbiters {
            arbiter.stop();
        }
        let max_holders = counters.max_holders.load(Ordering::SeqCst);
        assert!(
            max_holders <= CONCURRENCY_CAP,
            "{max_holders} holders at once"
        );
        // No time passed, so the rolling key granted at most its capacity, and it was used up.
        let granted = counters.rolling_granted.load(Ordering::SeqCst);
        assert!(granted <= ROLLING_CAP, "granted {granted} > {ROLLING_CAP}");
        assert!(
            granted >= ROLLING_CAP - 2,
            "rolling key left unused: {granted}"
        );
        let usage = service.get("conc").await.unwrap().unwrap().usage;
        assert_eq!(usage.in_use, 0, "every hold was released");
    })
    .await
    .expect("stress test finished within 60 s");
}
