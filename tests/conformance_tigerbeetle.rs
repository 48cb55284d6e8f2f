//! The backend-agnostic conformance suite, unchanged, against the TigerBeetle backend: one
//! real server per test binary (started by the tests), a unique key per scenario, and real
//! waiting for time to pass.

#![cfg(feature = "tigerbeetle")]

mod conformance;
mod support;

use std::sync::Arc;
use std::time::Duration;

use conformance::Harness;
use ratelimiter::model::{RetryPolicy, SystemClock};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};
use ratelimiter::tigerbeetle::TigerBeetleBackend;
use support::tigerbeetle::{self as tb, EXPIRY_SLACK_MS};

struct TigerBeetleHarness {
    service: Arc<LimiterService>,
}

async fn tigerbeetle_harness() -> TigerBeetleHarness {
    let server = tb::shared();
    let backend = TigerBeetleBackend::connect(
        tb::config(server),
        Arc::new(SystemClock),
        RetryPolicy::default(),
    )
    .await
    .expect("TigerBeetle backend connects");
    let service = LimiterService::start(
        backend,
        RegistrySource::InMemory,
        Vec::new(),
        ServiceSettings::default(),
    )
    .await
    .expect("service starts");
    TigerBeetleHarness { service }
}

impl Harness for TigerBeetleHarness {
    fn service(&self) -> &Arc<LimiterService> {
        &self.service
    }

    /// Real time passes; TigerBeetle frees expired holds on its next pulse, so the wait
    /// includes that slack (the trait asks for *at least* `ms`).
    async fn advance(&self, ms: i64) {
        let ms = u64::try_from(ms).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms + EXPIRY_SLACK_MS)).await;
    }
}

conformance_tests!(tigerbeetle_harness(), 90;
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
