//! The conformance suite against the in-memory backend, with a manual clock (no sleeps):
//! with its keys on one shard, on the default sixteen shards on one arbiter, and on sixteen
//! spread over four arbiters (multi-key reserves cross threads).

use std::sync::Arc;

use crate::conformance::Harness;
use ratelimiter::actors::{MemoryBackend, MemoryOptions};
use ratelimiter::model::{ManualClock, RetryPolicy};
use ratelimiter::service::LimiterService;

struct MemoryHarness {
    clock: Arc<ManualClock>,
    service: Arc<LimiterService>,
}

async fn memory_harness(arbiters: usize, shards: usize) -> MemoryHarness {
    let clock = ManualClock::new(1_700_000_000_000);
    let options = MemoryOptions {
        arbiters,
        shards,
        ..MemoryOptions::default()
    };
    let backend = MemoryBackend::start_with(clock.clone(), RetryPolicy::default(), options);
    let service = LimiterService::in_memory(backend)
        .await
        .expect("service starts");
    MemoryHarness { clock, service }
}

impl Harness for MemoryHarness {
    fn service(&self) -> &Arc<LimiterService> {
        &self.service
    }

    async fn advance(&self, ms: i64) {
        self.clock.advance_ms(ms);
    }
}

mod one_shard {
    use super::memory_harness;
    conformance_suite!(memory_harness(1, 1), 5);
}

mod one_arbiter {
    use super::memory_harness;
    use ratelimiter::actors::default_shards;
    conformance_suite!(memory_harness(1, default_shards()), 5);
}

mod four_arbiters {
    use super::memory_harness;
    use ratelimiter::actors::default_shards;
    conformance_suite!(memory_harness(4, default_shards()), 5);
}
