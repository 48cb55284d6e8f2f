//! The backend-agnostic conformance suite: every scenario of SPEC §4, written once against
//! `LimiterService` and run unchanged against each backend. A [`Harness`] supplies the
//! service and moves time (a manual clock for the memory backend, real waiting for
//! TigerBeetle), so scenarios use short windows and only "wait past" points in time.

use std::sync::Arc;

use ratelimiter::model::{
    Actual, CompleteCommand, CompleteRequest, LeaseId, LimitDefinition, LimitStatus, Overage,
    Requirement, ReserveCommand, ReserveRequest, ReserveResponse, Usage,
};
use ratelimiter::service::LimiterService;

use crate::support::limits::{concurrency, rolling, unique_key};

/// What a backend must provide to run the suite.
pub trait Harness {
    /// The service under test.
    fn service(&self) -> &Arc<LimiterService>;
    /// Lets at least `ms` milliseconds pass for the backend.
    fn advance(&self, ms: i64) -> impl std::future::Future<Output = ()>;
}

/// Runs each named scenario as its own test with a time bound, using `$make` (an async
/// expression building a harness).
macro_rules! conformance_tests {
    ($make:expr, $bound_secs:expr; $($name:ident),* $(,)?) => {
        $(
            #[actix_rt::test]
            async fn $name() {
                let bound = std::time::Duration::from_secs($bound_secs);
                tokio::time::timeout(bound, async {
                    let harness = $make.await;
                    $crate::conformance::$name(&harness).await;
                })
                .await
                .expect(concat!(stringify!($name), " exceeded its time bound"));
            }
        )*
    };
}

/// Every scenario of the suite, each as its own bounded test against the harness `$make`
/// builds. The one list of scenario names: a backend runs all of them or none.
macro_rules! conformance_suite {
    ($make:expr, $bound_secs:expr) => {
        conformance_tests!($make, $bound_secs;
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
        commands_with_parsed_lease_ids_act_as_requests,
        complete_is_idempotent_and_unknown_leases_are_ok,
        denied_lease_id_stays_denied,
        unknown_key_is_reported_and_takes_nothing,
        increase_takes_effect_immediately,
        decrease_blocks_until_capacity_frees_then_applies,
        decrease_is_replaced_or_cancelled_by_a_later_put,
        decreasing_is_checked_before_unknown,
        batch_items_apply_in_order,
        amounts_near_u64_max_never_wrap,
        exceeds_capacity_is_refused_at_once_and_takes_nothing,
        a_denied_rolling_reserve_hints_when_capacity_frees,
        );
    };
}

/// A unique key per scenario run, so a shared backend (TigerBeetle) never mixes runs.
pub fn key(name: &str) -> String {
    unique_key("conf", name)
}

pub async fn define<H: Harness>(h: &H, definition: LimitDefinition) -> LimitStatus {
    h.service()
        .define(definition)
        .await
        .expect("definition accepted")
}

pub async fn reserve_lease<H: Harness>(
    h: &H,
    lease: LeaseId,
    reqs: &[(&str, u64)],
) -> ReserveResponse {
    let requirements = reqs.iter().map(|(k, a)| Requirement::new(*k, *a)).collect();
    h.service()
        .reserve(&ReserveRequest::new(lease, requirements))
        .await
        .expect("valid reserve")
}

pub async fn reserve<H: Harness>(h: &H, reqs: &[(&str, u64)]) -> (LeaseId, ReserveResponse) {
    let lease = LeaseId::new();
    (lease, reserve_lease(h, lease, reqs).await)
}

pub async fn complete<H: Harness>(h: &H, lease: LeaseId, actuals: &[(&str, u64)]) {
    let actuals = actuals.iter().map(|(k, a)| Actual::new(*k, *a)).collect();
    let answer = h
        .service()
        .complete(&CompleteRequest::new(lease, actuals))
        .await
        .expect("valid complete");
    assert!(answer.ok, "complete failed: {}", answer.error);
}

pub async fn usage<H: Harness>(h: &H, key: &str) -> Usage {
    h.service()
        .get(key)
        .await
        .expect("backend answers")
        .expect("key is defined")
        .usage
}

pub async fn rolling_allows_until_capacity_then_denies<H: Harness>(h: &H) {
    let k = key("rpm");
    define(h, rolling(&k, 2, 60)).await;
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
    let (_, third) = reserve(h, &[(&k, 1)]).await;
    assert!(!third.allowed);
    assert!(third.retry_after_ms > 0);
    assert_eq!(third.error, "");
    assert_eq!(
        usage(h, &k).await,
        Usage {
            in_use: 2,
            available: 0,
            debt: 0
        }
    );
}

pub async fn rolling_reservations_expire_after_the_window<H: Harness>(h: &H) {
    let k = key("window");
    define(h, rolling(&k, 1, 2)).await;
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
    assert!(!reserve(h, &[(&k, 1)]).await.1.allowed);
    // The window plus the window margin (whole seconds on TigerBeetle).
    h.advance(3_000).await;
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
}

pub async fn multi_key_reserve_is_all_or_nothing<H: Harness>(h: &H) {
    let (provider, user) = (key("provider"), key("user"));
    define(h, rolling(&provider, 1, 60)).await;
    define(h, rolling(&user, 100, 60)).await;
    let (_, denied) = reserve(h, &[(&provider, 2), (&user, 2)]).await;
    assert!(!denied.allowed);
    assert_eq!(usage(h, &user).await.available, 100);
    assert_eq!(usage(h, &provider).await.available, 1);
    let (_, allowed) = reserve(h, &[(&provider, 1), (&user, 2)]).await;
    assert!(allowed.allowed);
    assert_eq!(usage(h, &user).await.available, 98);
    assert_eq!(usage(h, &provider).await.available, 0);
}

pub async fn concurrency_hold_is_released_on_complete<H: Harness>(h: &H) {
    let k = key("concurrency");
    define(h, concurrency(&k, 1, 30)).await;
    let (lease, first) = reserve(h, &[(&k, 1)]).await;
    assert!(first.allowed);
    assert!(!reserve(h, &[(&k, 1)]).await.1.allowed);
    complete(h, lease, &[]).await;
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
}

pub async fn concurrency_hold_is_released_on_timeout<H: Harness>(h: &H) {
    let k = key("timeout");
    define(h, concurrency(&k, 1, 2)).await;
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
    assert!(!reserve(h, &[(&k, 1)]).await.1.allowed);
    h.advance(2_100).await;
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
}

pub async fn reconcile_frees_slack_at_once<H: Harness>(h: &H) {
    let k = key("tpm");
    define(h, rolling(&k, 100, 60)).await;
    let (lease, first) = reserve(h, &[(&k, 100)]).await;
    assert!(first.allowed);
    assert!(!reserve(h, &[(&k, 50)]).await.1.allowed);
    complete(h, lease, &[(&k, 30)]).await;
    assert_eq!(
        usage(h, &k).await,
        Usage {
            in_use: 30,
            available: 70,
            debt: 0
        }
    );
    assert!(reserve(h, &[(&k, 70)]).await.1.allowed);
}

pub async fn overage_that_fits_is_reserved<H: Harness>(h: &H) {
    let k = key("overage-fits");
    define(h, rolling(&k, 100, 60)).await;
    let (lease, _) = reserve(h, &[(&k, 10)]).await;
    complete(h, lease, &[(&k, 30)]).await;
    assert_eq!(
        usage(h, &k).await,
        Usage {
            in_use: 30,
            available: 70,
            debt: 0
        }
    );
}

pub async fn overage_that_does_not_fit_becomes_debt<H: Harness>(h: &H) {
    let k = key("debt");
    define(h, rolling(&k, 100, 60)).await;
    let (lease, first) = reserve(h, &[(&k, 100)]).await;
    assert!(first.allowed);
    complete(h, lease, &[(&k, 150)]).await;
    let u = usage(h, &k).await;
    assert_eq!(u.debt, 50);
    assert_eq!(u.in_use, 100);
}

pub async fn deny_overage_records_no_debt<H: Harness>(h: &H) {
    let k = key("deny-overage");
    define(
        h,
        LimitDefinition {
            overage: Overage::Deny,
            ..rolling(&k, 100, 60)
        },
    )
    .await;
    let (lease, _) = reserve(h, &[(&k, 100)]).await;
    complete(h, lease, &[(&k, 150)]).await;
    assert_eq!(
        usage(h, &k).await,
        Usage {
            in_use: 100,
            available: 0,
            debt: 0
        }
    );
}

pub async fn reserve_is_idempotent<H: Harness>(h: &H) {
    let k = key("idem");
    define(h, rolling(&k, 10, 60)).await;
    let lease = LeaseId::new();
    let first = reserve_lease(h, lease, &[(&k, 4)]).await;
    let again = reserve_lease(h, lease, &[(&k, 4)]).await;
    assert!(first.allowed && again.allowed);
    assert_eq!(usage(h, &k).await.in_use, 4);
}

/// A command with a parsed lease id is the same reserve as a request with its text: a
/// repeat by either is idempotent, a command that breaks a rule is refused by the same
/// check and takes nothing, and its complete releases.
pub async fn commands_with_parsed_lease_ids_act_as_requests<H: Harness>(h: &H) {
    let k = key("command");
    define(h, concurrency(&k, 2, 30)).await;
    let service = h.service();
    let lease = LeaseId::new();
    let command = ReserveCommand::new(lease, vec![Requirement::new(k.as_str(), 1)]);
    let first = service
        .reserve_command(command.clone())
        .await
        .expect("valid");
    assert!(first.allowed);
    assert_eq!(reserve_lease(h, lease, &[(&k, 1)]).await, first);
    assert_eq!(
        service.reserve_command(command).await.expect("valid"),
        first
    );
    assert_eq!(usage(h, &k).await.in_use, 1);
    let twice = ReserveCommand::new(
        LeaseId::new(),
        vec![
            Requirement::new(k.as_str(), 1),
            Requirement::new(k.as_str(), 1),
        ],
    );
    let refused = service.reserve_command(twice).await.unwrap_err();
    assert!(refused.0.starts_with("requirements[1].key"), "{refused}");
    let zero = ReserveCommand::new(LeaseId::new(), vec![Requirement::new(k.as_str(), 0)]);
    assert!(service.reserve_command(zero).await.is_err());
    // A key that is not defined has its text checked as in a request.
    let control = ReserveCommand::new(
        LeaseId::new(),
        vec![
            Requirement::new(k.as_str(), 1),
            Requirement::new("bad\u{7}key", 1),
        ],
    );
    let refused = service.reserve_command(control).await.unwrap_err();
    assert!(refused.0.starts_with("requirements[1].key"), "{refused}");
    let long = ReserveCommand::new(LeaseId::new(), vec![Requirement::new("k".repeat(5000), 1)]);
    assert!(service.reserve_command(long).await.is_err());
    assert_eq!(usage(h, &k).await.in_use, 1);
    let complete = CompleteCommand::new(lease, vec![Actual::new(k.as_str(), 1)]);
    assert!(service.complete_command(complete).await.expect("valid").ok);
    assert_eq!(usage(h, &k).await.in_use, 0);
}

pub async fn complete_is_idempotent_and_unknown_leases_are_ok<H: Harness>(h: &H) {
    let k = key("complete-twice");
    define(h, rolling(&k, 100, 60)).await;
    let (lease, _) = reserve(h, &[(&k, 50)]).await;
    complete(h, lease, &[(&k, 20)]).await;
    complete(h, lease, &[(&k, 5)]).await;
    assert_eq!(usage(h, &k).await.in_use, 20);
    complete(h, LeaseId::new(), &[(&k, 5)]).await;
    assert_eq!(usage(h, &k).await.in_use, 20);
}

pub async fn denied_lease_id_stays_denied<H: Harness>(h: &H) {
    let k = key("denied-stays");
    define(h, concurrency(&k, 1, 30)).await;
    let (holder, _) = reserve(h, &[(&k, 1)]).await;
    let (denied_lease, denied) = reserve(h, &[(&k, 1)]).await;
    assert!(!denied.allowed);
    complete(h, holder, &[]).await;
    assert!(!reserve_lease(h, denied_lease, &[(&k, 1)]).await.allowed);
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
}

pub async fn unknown_key_is_reported_and_takes_nothing<H: Harness>(h: &H) {
    let k = key("known");
    define(h, rolling(&k, 5, 60)).await;
    let missing = key("missing");
    let (_, answer) = reserve(h, &[(&k, 1), (&missing, 1)]).await;
    assert!(!answer.allowed);
    assert_eq!(answer.retry_after_ms, 0);
    assert_eq!(answer.error, format!("unknown_limit_key:{missing}"));
    assert_eq!(usage(h, &k).await.in_use, 0);
}

pub async fn increase_takes_effect_immediately<H: Harness>(h: &H) {
    let k = key("increase");
    define(h, rolling(&k, 1, 60)).await;
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
    assert!(!reserve(h, &[(&k, 1)]).await.1.allowed);
    assert_eq!(define(h, rolling(&k, 3, 60)).await, LimitStatus::Active);
    assert!(reserve(h, &[(&k, 2)]).await.1.allowed);
    assert_eq!(
        usage(h, &k).await,
        Usage {
            in_use: 3,
            available: 0,
            debt: 0
        }
    );
}

pub async fn decrease_blocks_until_capacity_frees_then_applies<H: Harness>(h: &H) {
    let k = key("decrease");
    define(h, rolling(&k, 100, 60)).await;
    let (lease, _) = reserve(h, &[(&k, 80)]).await;
    assert_eq!(
        define(h, rolling(&k, 60, 60)).await,
        LimitStatus::Decreasing
    );
    let (_, blocked) = reserve(h, &[(&k, 1)]).await;
    assert!(!blocked.allowed);
    assert_eq!(blocked.error, format!("limit_decreasing:{k}"));
    assert_eq!(blocked.retry_after_ms, 10_000);
    h.service().apply_pending_decreases().await;
    let info = h.service().get(&k).await.unwrap().unwrap();
    assert_eq!(
        info.state.status,
        LimitStatus::Decreasing,
        "80 in use > 60: not yet"
    );
    complete(h, lease, &[(&k, 40)]).await;
    // Not counted: on a shared backend other tests' decreases (or another instance
    // applying this one) change the count; the state below is what matters.
    h.service().apply_pending_decreases().await;
    let info = h.service().get(&k).await.unwrap().unwrap();
    assert_eq!(info.state.status, LimitStatus::Active);
    assert_eq!(info.state.definition.capacity, 60);
    assert_eq!(
        info.usage,
        Usage {
            in_use: 40,
            available: 20,
            debt: 0
        }
    );
    assert!(reserve(h, &[(&k, 20)]).await.1.allowed);
    assert!(!reserve(h, &[(&k, 1)]).await.1.allowed);
}

pub async fn decrease_is_replaced_or_cancelled_by_a_later_put<H: Harness>(h: &H) {
    let k = key("replace");
    define(h, rolling(&k, 100, 60)).await;
    let (lease, _) = reserve(h, &[(&k, 80)]).await;
    define(h, rolling(&k, 60, 60)).await;
    define(h, rolling(&k, 50, 60)).await;
    let info = h.service().get(&k).await.unwrap().unwrap();
    assert_eq!(info.state.pending_decrease_to, 50);
    assert_eq!(info.state.definition.capacity, 100);
    assert_eq!(define(h, rolling(&k, 100, 60)).await, LimitStatus::Active);
    assert!(reserve(h, &[(&k, 20)]).await.1.allowed);
    complete(h, lease, &[]).await;
    h.service().apply_pending_decreases().await;
    let info = h.service().get(&k).await.unwrap().unwrap();
    assert_eq!(info.state.status, LimitStatus::Active);
    assert_eq!(
        info.state.definition.capacity, 100,
        "no decrease left to apply"
    );
}

pub async fn decreasing_is_checked_before_unknown<H: Harness>(h: &H) {
    let k = key("order");
    define(h, rolling(&k, 10, 60)).await;
    let (_lease, _) = reserve(h, &[(&k, 10)]).await;
    define(h, rolling(&k, 5, 60)).await;
    let missing = key("nope");
    let (_, answer) = reserve(h, &[(&missing, 1), (&k, 1)]).await;
    assert_eq!(answer.error, format!("limit_decreasing:{k}"));
}

pub async fn batch_items_apply_in_order<H: Harness>(h: &H) {
    let k = key("batch");
    define(h, rolling(&k, 1, 60)).await;
    let requests: Vec<_> = (0..2)
        .map(|_| ReserveRequest::new(LeaseId::new(), vec![Requirement::new(&k, 1)]))
        .collect();
    let results = h.service().reserve_batch(&requests).await;
    assert!(results[0].allowed);
    assert!(!results[1].allowed);
    assert_eq!(results[1].error, "");
}

pub async fn amounts_near_u64_max_never_wrap<H: Harness>(h: &H) {
    let k = key("huge");
    define(h, rolling(&k, u64::MAX - 1, 60)).await;
    let (lease, first) = reserve(h, &[(&k, u64::MAX - 2)]).await;
    assert!(first.allowed);
    assert!(!reserve(h, &[(&k, 2)]).await.1.allowed);
    assert!(!reserve(h, &[(&k, u64::MAX)]).await.1.allowed);
    assert!(reserve(h, &[(&k, 1)]).await.1.allowed);
    complete(h, lease, &[(&k, u64::MAX)]).await;
    let u = usage(h, &k).await;
    assert!(u.in_use < u64::MAX);
    assert_eq!(u.in_use + u.available, u64::MAX - 1);
}

pub async fn exceeds_capacity_is_refused_at_once_and_takes_nothing<H: Harness>(h: &H) {
    let (k, other) = (key("small"), key("other"));
    define(h, rolling(&k, 10, 60)).await;
    define(h, concurrency(&other, 5, 30)).await;
    let exceeds = format!("exceeds_capacity:{k}");

    // Single: answered at once, no hint, nothing taken on any key of the reserve.
    let (lease, answer) = reserve(h, &[(&other, 1), (&k, 11)]).await;
    assert!(!answer.allowed);
    assert_eq!(
        (answer.retry_after_ms, answer.error.as_str()),
        (0, exceeds.as_str())
    );
    assert_eq!(usage(h, &k).await.in_use, 0);
    assert_eq!(usage(h, &other).await.in_use, 0);
    // The same lease id is answered the same way, and a fitting reserve still works.
    assert_eq!(
        reserve_lease(h, lease, &[(&other, 1), (&k, 11)])
            .await
            .error,
        exceeds
    );
    assert!(reserve(h, &[(&k, 10)]).await.1.allowed);

    // Batch: each item gets its own answer.
    let requests: Vec<_> = [11, 1]
        .iter()
        .map(|&amount| ReserveRequest::new(LeaseId::new(), vec![Requirement::new(&k, amount)]))
        .collect();
    let results = h.service().reserve_batch(&requests).await;
    assert_eq!(
        (results[0].retry_after_ms, results[0].error.as_str()),
        (0, exceeds.as_str())
    );
    assert!(!results[1].allowed, "the key is full");
    assert_eq!(results[1].error, "");
    assert!(results[1].retry_after_ms > 0);
    assert_eq!(usage(h, &k).await.in_use, 10);

    // Checked after unknown keys, and against the capacity in force.
    let missing = key("missing");
    let (_, answer) = reserve(h, &[(&k, 11), (&missing, 1)]).await;
    assert_eq!(answer.error, format!("unknown_limit_key:{missing}"));
    define(h, rolling(&k, 30, 60)).await;
    let (_, answer) = reserve(h, &[(&k, 11)]).await;
    assert!(answer.allowed, "11 fits the increased capacity");
}

pub async fn a_denied_rolling_reserve_hints_when_capacity_frees<H: Harness>(h: &H) {
    let k = key("exact");
    define(h, rolling(&k, 2, 60)).await;
    assert!(reserve(h, &[(&k, 2)]).await.1.allowed);
    let (_, denied) = reserve(h, &[(&k, 1)]).await;
    assert!(!denied.allowed);
    // The window (plus its margin, whole seconds on TigerBeetle, plus jitter): far past
    // what the backoff table could say (at most 5 s plus jitter).
    assert!(
        (59_000..=61_100).contains(&denied.retry_after_ms),
        "{}",
        denied.retry_after_ms
    );
}
