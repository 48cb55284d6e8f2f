//! The conformance suite against the in-memory backend, with a manual clock (no sleeps).

mod conformance;

use std::sync::Arc;

use conformance::Harness;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{ManualClock, RetryPolicy};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};

struct MemoryHarness {
    clock: Arc<ManualClock>,
    service: Arc<LimiterService>,
}

async fn memory_harness() -> MemoryHarness {
    let clock = ManualClock::new(1_700_000_000_000);
    let backend = MemoryBackend::start(clock.clone(), RetryPolicy::default());
    let service = LimiterService::start(
        backend,
        RegistrySource::InMemory,
        Vec::new(),
        ServiceSettings::default(),
    )
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

conformance_tests!(memory_harness(), 5;
    rolling_allows_until_capacity_then_denies,
    rolling_reservations_expire_after_the_window,
    multi_key_reserve_is_all_or_nothing,
    concurrency_hold_is_released_on_complete,
    concurrency_hold_is_released_on_timeout,
    reconcile_frees_slack_at_once,
    overage_that_fits_is_reserved,
    overage_that_does_not_fit_becomes_debt,
    deny_overage_records_no_debt,
    reserve_is_idempotent,
    complete_is_idempotent_and_unknown_leases_are_ok,
    denied_lease_id_stays_denied,
    unknown_key_is_reported_and_takes_nothing,
    increase_takes_effect_immediately,
    decrease_blocks_until_capacity_frees_then_applies,
    decrease_is_replaced_or_cancelled_by_a_later_put,
    decreasing_is_checked_before_unknown,
    batch_items_apply_in_order,
    amounts_near_u64_max_never_wrap,
);
