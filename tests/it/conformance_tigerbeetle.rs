//! The backend-agnostic conformance suite, unchanged, against the TigerBeetle backend: one
//! real server per test binary (started by the tests), a unique key per scenario, and real
//! waiting for time to pass.

use std::sync::Arc;
use std::time::Duration;

use crate::conformance::Harness;
use crate::support::tigerbeetle::{self as tb, EXPIRY_SLACK_MS};
use ratelimiter::model::{RetryPolicy, SystemClock};
use ratelimiter::service::LimiterService;
use ratelimiter::tigerbeetle::TigerBeetleBackend;

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
    let service = LimiterService::in_memory(backend)
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

conformance_suite!(tigerbeetle_harness(), 90);
