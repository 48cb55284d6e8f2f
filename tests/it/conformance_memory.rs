//! The conformance suite against the in-memory backend, with a manual clock (no sleeps).

use std::sync::Arc;

use crate::conformance::Harness;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{ManualClock, RetryPolicy};
use ratelimiter::service::LimiterService;

struct MemoryHarness {
    clock: Arc<ManualClock>,
    service: Arc<LimiterService>,
}

async fn memory_harness() -> MemoryHarness {
    let clock = ManualClock::new(1_700_000_000_000);
    let backend = MemoryBackend::start(clock.clone(), RetryPolicy::default());
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

conformance_suite!(memory_harness(), 5);
