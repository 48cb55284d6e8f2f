//! Exact retry-after hints of the memory backend (SPEC §9): a denied rolling key answers
//! when the amount fits, from its live reservations in expiry order, plus 0..jitter_ms and
//! never earlier; a multi-key denial answers the largest hint; a concurrency key keeps the
//! backoff table but never hints past its earliest hold's timeout. Time is a manual clock.

use std::sync::Arc;

use crate::support::bound::bounded;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{
    Actual, CompleteRequest, LeaseId, LimitDefinition, ManualClock, Requirement, ReserveRequest,
    ReserveResponse, RetryPolicy,
};
use ratelimiter::service::LimiterService;

const T0: i64 = 1_700_000_000_000;
const WINDOW_MS: i64 = 10_000;

struct Fixture {
    clock: Arc<ManualClock>,
    service: Arc<LimiterService>,
    policy: RetryPolicy,
}

impl Fixture {
    async fn new(policy: RetryPolicy, definitions: Vec<LimitDefinition>) -> Fixture {
        let clock = ManualClock::new(T0);
        let backend = MemoryBackend::start(clock.clone(), policy);
        let service = LimiterService::in_memory(backend)
            .await
            .expect("service starts");
        for definition in definitions {
            service.define(definition).await.expect("defined");
        }
        Fixture {
            clock,
            service,
            policy,
        }
    }

    /// Sets the clock to `ms` after T0.
    fn at(&self, ms: i64) {
        self.clock.set_ms(T0 + ms);
    }

    async fn reserve_lease(&self, lease: LeaseId, reqs: &[(&str, u64)]) -> ReserveResponse {
        let requirements = reqs.iter().map(|(k, a)| Requirement::new(*k, *a)).collect();
        self.service
            .reserve(&ReserveRequest::new(lease, requirements))
            .await
            .expect("valid reserve")
    }

    async fn reserve(&self, reqs: &[(&str, u64)]) -> ReserveResponse {
        self.reserve_lease(LeaseId::new(), reqs).await
    }

    /// The hold of a rolling reservation: the window plus the margin.
    fn hold_ms(&self) -> i64 {
        WINDOW_MS + self.policy.window_margin_ms as i64
    }

    /// Asserts a denial hinting `wait_ms` plus at most the rolling jitter.
    fn assert_hint(&self, answer: &ReserveResponse, wait_ms: i64) {
        assert!(!answer.allowed, "expected a denial");
        assert_eq!(answer.error, "");
        let wait = wait_ms as u64;
        let jitter = self.policy.rolling.jitter_ms;
        assert!(
            (wait..=wait + jitter).contains(&answer.retry_after_ms),
            "hint {} not in {wait}..={}",
            answer.retry_after_ms,
            wait + jitter
        );
    }
}

fn rolling(key: &str, capacity: u64) -> LimitDefinition {
    LimitDefinition::rolling(key, capacity, (WINDOW_MS / 1000) as u64)
}

fn no_jitter() -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.rolling.jitter_ms = 0;
    policy.concurrency.jitter_ms = 0;
    policy
}

#[actix_rt::test]
async fn the_hint_is_the_next_expiry_and_never_early() {
    bounded(10, async {
        let f = Fixture::new(RetryPolicy::default(), vec![rolling("k", 3)]).await;
        for at in [0, 1_000, 2_000] {
            f.at(at);
            assert!(f.reserve(&[("k", 1)]).await.allowed);
        }
        f.at(2_500);
        let denied = f.reserve(&[("k", 1)]).await;
        // The reservation made at 0 expires at 0 + window + margin.
        f.assert_hint(&denied, f.hold_ms() - 2_500);

        // Without jitter the hint is the exact moment: one millisecond earlier is refused,
        // at the hint it fits.
        let f = Fixture::new(no_jitter(), vec![rolling("k", 1)]).await;
        assert!(f.reserve(&[("k", 1)]).await.allowed);
        f.at(4_000);
        let hint = f.reserve(&[("k", 1)]).await.retry_after_ms as i64;
        assert_eq!(hint, f.hold_ms() - 4_000);
        f.at(4_000 + hint - 1);
        assert!(!f.reserve(&[("k", 1)]).await.allowed);
        f.at(4_000 + hint);
        assert!(f.reserve(&[("k", 1)]).await.allowed);
    })
    .await;
}

#[actix_rt::test]
async fn an_amount_that_needs_several_expiries_waits_for_the_last_of_them() {
    bounded(10, async {
        let f = Fixture::new(RetryPolicy::default(), vec![rolling("tpm", 10)]).await;
        for (at, amount) in [(0, 4), (1_000, 3), (3_000, 3)] {
            f.at(at);
            assert!(f.reserve(&[("tpm", amount)]).await.allowed);
        }
        f.at(5_000);
        // 4 frees at hold, 3 more at 1 000 + hold, the last 3 at 3 000 + hold.
        f.assert_hint(&f.reserve(&[("tpm", 4)]).await, f.hold_ms() - 5_000);
        f.assert_hint(&f.reserve(&[("tpm", 6)]).await, 1_000 + f.hold_ms() - 5_000);
        f.assert_hint(
            &f.reserve(&[("tpm", 10)]).await,
            3_000 + f.hold_ms() - 5_000,
        );
        // A reconcile that frees slack makes the next hint earlier.
        let lease = LeaseId::new();
        f.at(f.hold_ms());
        assert!(f.reserve_lease(lease, &[("tpm", 4)]).await.allowed);
        f.service
            .complete(&CompleteRequest::new(lease, vec![Actual::new("tpm", 1)]))
            .await
            .expect("valid complete");
        assert!(f.reserve(&[("tpm", 3)]).await.allowed, "the slack is free");
    })
    .await;
}

#[actix_rt::test]
async fn a_multi_key_denial_hints_the_largest_wait_among_the_keys_that_did_not_fit() {
    bounded(10, async {
        let f = Fixture::new(
            RetryPolicy::default(),
            vec![
                rolling("short", 1),
                LimitDefinition::rolling("long", 1, 30),
                rolling("roomy", 100),
            ],
        )
        .await;
        assert!(f.reserve(&[("short", 1), ("long", 1)]).await.allowed);
        f.at(100);
        let denied = f.reserve(&[("short", 1), ("long", 1), ("roomy", 1)]).await;
        f.assert_hint(&denied, 30_000 + f.policy.window_margin_ms as i64 - 100);
        let denied = f.reserve(&[("short", 1), ("roomy", 1)]).await;
        f.assert_hint(&denied, f.hold_ms() - 100);
    })
    .await;
}

#[actix_rt::test]
async fn an_overage_hold_delays_the_hint_until_it_expires() {
    bounded(10, async {
        let f = Fixture::new(RetryPolicy::default(), vec![rolling("tpm", 10)]).await;
        let lease = LeaseId::new();
        assert!(f.reserve_lease(lease, &[("tpm", 5)]).await.allowed);
        // Completed late with more than reserved: the whole actual is held at least 1 s more.
        let late = f.hold_ms() - 500;
        f.at(late);
        f.service
            .complete(&CompleteRequest::new(lease, vec![Actual::new("tpm", 8)]))
            .await
            .expect("valid complete");
        f.at(late + 100);
        f.assert_hint(&f.reserve(&[("tpm", 5)]).await, 900);
        f.at(late + 1_000);
        assert!(f.reserve(&[("tpm", 5)]).await.allowed);
    })
    .await;
}

#[actix_rt::test]
async fn a_concurrency_hint_never_passes_the_earliest_hold_timeout() {
    bounded(10, async {
        let f = Fixture::new(
            no_jitter(),
            vec![LimitDefinition::concurrency("slots", 1, 2)],
        )
        .await;
        assert!(f.reserve(&[("slots", 1)]).await.allowed);
        // Far from the timeout the table applies (base 50 ms, growing with the streak).
        f.at(100);
        assert_eq!(f.reserve(&[("slots", 1)]).await.retry_after_ms, 50);
        assert_eq!(f.reserve(&[("slots", 1)]).await.retry_after_ms, 100);
        // Close to it, the hint stops at the hold's timeout whatever the streak.
        f.at(1_900);
        for _ in 0..8 {
            let answer = f.reserve(&[("slots", 1)]).await;
            assert!(!answer.allowed);
            assert!(answer.retry_after_ms <= 100, "{}", answer.retry_after_ms);
        }
        f.at(2_000);
        assert!(f.reserve(&[("slots", 1)]).await.allowed);
    })
    .await;
}
