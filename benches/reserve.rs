//! Criterion benchmarks of the memory backend's hot path, through the service as the HTTP
//! handlers call it: reserve with 1 and 4 keys, complete with 4 keys. Numbers go to
//! BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ratelimiter::actors::MemoryOptions;
use ratelimiter::model::{Actual, CompleteRequest, LeaseId, Requirement, ReserveRequest};
use ratelimiter::service::LimiterService;

mod support;

use support::KEYS;

async fn service() -> Arc<LimiterService> {
    support::service(MemoryOptions::default()).await
}

fn request(keys: usize) -> ReserveRequest {
    ReserveRequest::new(
        LeaseId::new(),
        KEYS[..keys]
            .iter()
            .map(|k| Requirement::new(*k, 100))
            .collect(),
    )
}

fn bench_reserve(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let service = system.block_on(service());
    let mut group = c.benchmark_group("memory");
    for keys in [1usize, 4] {
        group.bench_function(format!("reserve_{keys}_key"), |b| {
            b.iter_custom(|iters| {
                let requests: Vec<_> = (0..iters).map(|_| request(keys)).collect();
                system.block_on(async {
                    let start = Instant::now();
                    for r in &requests {
                        let answer = service.reserve(r).await.expect("valid");
                        assert!(answer.allowed);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.bench_function("complete_4_keys", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let mut completes = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    let r = request(4);
                    assert!(service.reserve(&r).await.expect("valid").allowed);
                    let lease = r.lease_id.parse::<LeaseId>().expect("ulid");
                    let actuals = KEYS.iter().map(|k| Actual::new(*k, 50)).collect();
                    completes.push(CompleteRequest::new(lease, actuals));
                }
                let start = Instant::now();
                for c in &completes {
                    assert!(service.complete(c).await.expect("valid").ok);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(50);
    targets = bench_reserve
}
criterion_main!(benches);
