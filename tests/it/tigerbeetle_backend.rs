//! The TigerBeetle backend against a real server: what the ledger holds after each
//! operation (read with a raw client), idempotency across instances, denied ids, expiry,
//! reconciliation, debt, and capacity changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::limits::{concurrency, rolling, unique_key};
use crate::support::tigerbeetle::{self as tb, LeaseTransfer, EXPIRY_SLACK_MS};
use ratelimiter::backend::Backend;
use ratelimiter::model::{
    Actual, CompleteRequest, LeaseId, LimitDefinition, LimitState, LimitStatus, Requirement,
    ReserveRequest, ReserveResponse, RetryPolicy, SystemClock,
};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};
use ratelimiter::tigerbeetle::TigerBeetleBackend;

pub(crate) fn key(name: &str) -> String {
    unique_key("it", name)
}

/// A fresh backend on the shared server (its own client, book and lease table).
pub(crate) async fn backend() -> Arc<TigerBeetleBackend> {
    TigerBeetleBackend::connect(
        tb::config(tb::shared()),
        Arc::new(SystemClock),
        RetryPolicy::default(),
    )
    .await
    .expect("TigerBeetle backend connects")
}

/// A service over a fresh backend (a new instance: empty lease table) knowing `defs`.
pub(crate) async fn instance(
    defs: &[LimitDefinition],
) -> (Arc<LimiterService>, Arc<TigerBeetleBackend>) {
    let backend = backend().await;
    let seed = defs.iter().cloned().map(LimitState::active).collect();
    let service = LimiterService::start(
        backend.clone(),
        RegistrySource::InMemory,
        seed,
        ServiceSettings::default(),
    )
    .await
    .expect("service starts");
    (service, backend)
}

pub(crate) async fn reserve_lease(
    s: &LimiterService,
    lease: LeaseId,
    reqs: &[(&str, u64)],
) -> ReserveResponse {
    let requirements = reqs.iter().map(|(k, a)| Requirement::new(*k, *a)).collect();
    s.reserve(&ReserveRequest::new(lease, requirements))
        .await
        .expect("valid reserve")
}

pub(crate) async fn reserve(
    s: &LimiterService,
    reqs: &[(&str, u64)],
) -> (LeaseId, ReserveResponse) {
    let lease = LeaseId::new();
    (lease, reserve_lease(s, lease, reqs).await)
}

pub(crate) async fn complete(s: &LimiterService, lease: LeaseId, actuals: &[(&str, u64)]) {
    let actuals = actuals.iter().map(|(k, a)| Actual::new(*k, *a)).collect();
    let answer = s
        .complete(&CompleteRequest::new(lease, actuals))
        .await
        .expect("valid complete");
    assert!(answer.ok, "complete failed: {}", answer.error);
}

#[actix_rt::test]
async fn a_multi_key_reserve_is_one_linked_chain() {
    bounded(60, async {
        let (a, b) = (key("a"), key("b"));
        let (s, _) = instance(&[rolling(&a, 10, 60), rolling(&b, 2, 60)]).await;
        assert!(reserve(&s, &[(&b, 1)]).await.1.allowed);
        let (denied, answer) = reserve(&s, &[(&a, 5), (&b, 2)]).await;
        assert!(!answer.allowed && answer.retry_after_ms > 0);
        assert_eq!(tb::limit_balance(&a).await, (10, 0, 0), "a took nothing");
        assert_eq!(tb::limit_balance(&b).await, (2, 0, 1));
        assert!(tb::lease_transfer(LeaseTransfer::Reserve, denied, &a)
            .await
            .is_none());

        let (allowed, answer) = reserve(&s, &[(&a, 5), (&b, 1)]).await;
        assert!(answer.allowed);
        assert_eq!(tb::limit_balance(&a).await, (10, 0, 5));
        assert_eq!(tb::limit_balance(&b).await, (2, 0, 2));
        let pending = tb::lease_transfer(LeaseTransfer::Reserve, allowed, &a)
            .await
            .expect("pending exists");
        assert_eq!(pending.amount(), 5);
        assert_eq!(
            pending.timeout(),
            61,
            "the window plus the margin, whole seconds"
        );
    })
    .await;
}

#[actix_rt::test]
async fn a_denied_lease_id_stays_denied_after_the_window_in_every_instance() {
    bounded(60, async {
        let k = key("denied");
        let def = rolling(&k, 1, 1);
        let (s, _) = instance(std::slice::from_ref(&def)).await;
        assert!(reserve(&s, &[(&k, 1)]).await.1.allowed);
        let (denied, answer) = reserve(&s, &[(&k, 1)]).await;
        assert!(!answer.allowed);
        // Past the hold: the 1 s window plus the margin, whole seconds on TigerBeetle.
        tokio::time::sleep(Duration::from_millis(2_000 + EXPIRY_SLACK_MS)).await;
        // The lease table has forgotten it by now: TigerBeetle answers id_already_failed.
        assert!(!reserve_lease(&s, denied, &[(&k, 1)]).await.allowed);
        let (other, _) = instance(&[def]).await;
        let again = reserve_lease(&other, denied, &[(&k, 1)]).await;
        assert!(!again.allowed);
        assert!(again.retry_after_ms > 0);
        assert_eq!(again.error, "");
        assert!(
            reserve(&other, &[(&k, 1)]).await.1.allowed,
            "a new lease id fits"
        );
    })
    .await;
}

#[actix_rt::test]
async fn a_repeated_reserve_is_allowed_once_even_on_another_instance() {
    bounded(60, async {
        let k = key("idem");
        let def = rolling(&k, 10, 60);
        let (first, _) = instance(std::slice::from_ref(&def)).await;
        let (second, _) = instance(&[def]).await;
        let lease = LeaseId::new();
        assert!(reserve_lease(&first, lease, &[(&k, 4)]).await.allowed);
        assert!(reserve_lease(&first, lease, &[(&k, 4)]).await.allowed);
        // The other instance has never seen the lease: TigerBeetle answers `exists`.
        let replay = reserve_lease(&second, lease, &[(&k, 4)]).await;
        assert!(replay.allowed);
        assert_eq!(tb::limit_balance(&k).await, (10, 0, 4));
    })
    .await;
}

#[actix_rt::test]
async fn concurrency_holds_are_released_on_complete_and_on_timeout() {
    bounded(60, async {
        let k = key("conc");
        let (s, _) = instance(&[concurrency(&k, 1, 1)]).await;
        let (first, answer) = reserve(&s, &[(&k, 1)]).await;
        assert!(answer.allowed);
        assert_eq!(tb::limit_balance(&k).await.2, 1);
        complete(&s, first, &[]).await;
        assert_eq!(tb::limit_balance(&k).await.2, 0, "void released the hold");
        let void = tb::lease_transfer(LeaseTransfer::Void, first, &k).await;
        assert!(void.is_some());

        let (second, answer) = reserve(&s, &[(&k, 1)]).await;
        assert!(answer.allowed);
        assert!(!reserve(&s, &[(&k, 1)]).await.1.allowed);
        tokio::time::sleep(Duration::from_millis(1_000 + EXPIRY_SLACK_MS)).await;
        assert!(
            reserve(&s, &[(&k, 1)]).await.1.allowed,
            "the hold timed out"
        );
        // Completing the expired hold is fine (pending_transfer_expired = released).
        complete(&s, second, &[]).await;
    })
    .await;
}

#[actix_rt::test]
async fn reconcile_frees_slack_at_once_and_keeps_the_rest_until_the_window_ends() {
    bounded(60, async {
        let k = key("reconcile");
        let (s, _) = instance(&[rolling(&k, 100, 6)]).await;
        let started = Instant::now();
        let (lease, answer) = reserve(&s, &[(&k, 100)]).await;
        assert!(answer.allowed);
        tokio::time::sleep(Duration::from_millis(2_000)).await;

        let reconciled = Instant::now();
        complete(&s, lease, &[(&k, 30)]).await;
        let (slack, answer) = reserve(&s, &[(&k, 70)]).await;
        assert!(answer.allowed, "the slack is free at once");
        assert!(reconciled.elapsed() < Duration::from_millis(500));
        let rereserve = tb::lease_transfer(LeaseTransfer::Rereserve, lease, &k)
            .await
            .expect("re-reservation exists");
        assert_eq!(rereserve.amount(), 30);
        assert_eq!(
            rereserve.timeout(),
            5,
            "the remaining ~4.05 s (window + margin), rounded up"
        );
        complete(&s, slack, &[(&k, 0)]).await;
        assert_eq!(tb::limit_balance(&k).await.2, 30);

        tokio::time::sleep(Duration::from_millis(5_000).saturating_sub(started.elapsed())).await;
        assert_eq!(
            tb::limit_balance(&k).await.2,
            30,
            "held until the window ends"
        );
        tokio::time::sleep(Duration::from_millis(8_000).saturating_sub(started.elapsed())).await;
        assert_eq!(
            tb::limit_balance(&k).await.2,
            0,
            "released when the window and its margin ended"
        );
    })
    .await;
}

#[actix_rt::test]
async fn overage_that_does_not_fit_is_posted_to_the_debt_account() {
    bounded(60, async {
        let k = key("debt");
        let (s, _) = instance(&[rolling(&k, 100, 60)]).await;
        let (lease, _) = reserve(&s, &[(&k, 100)]).await;
        complete(&s, lease, &[(&k, 150)]).await;
        let debt = tb::debt_account(&k).await.expect("debt account exists");
        assert_eq!((debt.debits_posted(), debt.credits_posted()), (50, 0));
        let record = tb::lease_transfer(LeaseTransfer::Debt, lease, &k)
            .await
            .expect("debt transfer exists");
        assert_eq!(record.amount(), 50);
        assert_eq!(
            tb::limit_balance(&k).await,
            (100, 0, 100),
            "debt takes no capacity"
        );
        let usage = s.get(&k).await.unwrap().unwrap().usage;
        assert_eq!((usage.in_use, usage.available, usage.debt), (100, 0, 50));

        // An overage that fits is a pending transfer for the rest of the window.
        let fits = key("fits");
        s.define(rolling(&fits, 100, 60)).await.unwrap();
        let (lease, _) = reserve(&s, &[(&fits, 10)]).await;
        complete(&s, lease, &[(&fits, 30)]).await;
        let overage = tb::lease_transfer(LeaseTransfer::Rereserve, lease, &fits)
            .await
            .expect("overage pending exists");
        assert_eq!(overage.amount(), 20);
        assert!((60..=61).contains(&overage.timeout()));
        assert_eq!(tb::limit_balance(&fits).await.2, 30);
    })
    .await;
}

#[actix_rt::test]
async fn new_keys_are_usable_at_once_without_restart() {
    bounded(60, async {
        let (s, _) = instance(&[]).await;
        let k = key("new");
        let started = Instant::now();
        s.define(concurrency(&k, 2, 30)).await.unwrap();
        assert!(reserve(&s, &[(&k, 2)]).await.1.allowed);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(tb::limit_balance(&k).await, (2, 0, 2));
    })
    .await;
}

#[actix_rt::test]
async fn capacity_is_funded_once_across_instances_and_restarts() {
    bounded(60, async {
        let k = key("fund");
        let (a, _) = instance(&[]).await;
        let (b, _) = instance(&[]).await;
        // Two instances define the same new key at the same moment: funded once.
        let (ra, rb) = futures::join!(
            a.define(rolling(&k, 100, 60)),
            b.define(rolling(&k, 100, 60))
        );
        ra.unwrap();
        rb.unwrap();
        assert_eq!(tb::limit_balance(&k).await, (100, 0, 0));
        // A restart defines it again: nothing more.
        instance(&[rolling(&k, 100, 60)]).await;
        assert_eq!(tb::limit_balance(&k).await, (100, 0, 0));
        // Increase at once, even with capacity in use.
        let (lease, _) = reserve(&a, &[(&k, 100)]).await;
        assert_eq!(
            a.define(rolling(&k, 150, 60)).await.unwrap(),
            LimitStatus::Active
        );
        assert!(reserve(&a, &[(&k, 50)]).await.1.allowed);
        assert_eq!(tb::limit_balance(&k).await, (150, 0, 150));
        // Down to 100 and back to 150: the second funding gets its own id.
        complete(&a, lease, &[(&k, 0)]).await;
        assert_eq!(
            a.define(rolling(&k, 100, 60)).await.unwrap(),
            LimitStatus::Decreasing
        );
        // Not counted: other tests share the server, and so the definitions and their
        // decreases; the balance is what matters.
        a.apply_pending_decreases().await;
        assert_eq!(tb::limit_balance(&k).await, (150, 50, 50));
        a.define(rolling(&k, 150, 60)).await.unwrap();
        let (cp, dp, _) = tb::limit_balance(&k).await;
        assert_eq!(cp - dp, 150);
    })
    .await;
}

#[actix_rt::test]
async fn a_decrease_waits_for_free_capacity_and_applies_once() {
    bounded(60, async {
        let k = key("decrease");
        let (s, backend) = instance(&[rolling(&k, 100, 60)]).await;
        let (lease, _) = reserve(&s, &[(&k, 80)]).await;
        assert_eq!(
            s.define(rolling(&k, 60, 60)).await.unwrap(),
            LimitStatus::Decreasing
        );
        let blocked = reserve(&s, &[(&k, 1)]).await.1;
        assert_eq!(blocked.error, format!("limit_decreasing:{k}"));
        // Attempts that do not fit burn nothing that a later attempt needs.
        for _ in 0..3 {
            s.apply_pending_decreases().await;
            assert!(!backend.try_decrease(&k, 60).await.unwrap());
        }
        assert_eq!(tb::limit_balance(&k).await, (100, 0, 80));
        complete(&s, lease, &[(&k, 40)]).await;
        s.apply_pending_decreases().await;
        assert_eq!(tb::limit_balance(&k).await, (100, 40, 40));
        assert!(reserve(&s, &[(&k, 20)]).await.1.allowed);
        assert!(!reserve(&s, &[(&k, 1)]).await.1.allowed);

        // Two instances applying the same decrease at once take it once.
        let twice = key("twice");
        let (_, first) = instance(&[rolling(&twice, 100, 60)]).await;
        let (_, second) = instance(&[rolling(&twice, 100, 60)]).await;
        let (x, y) = futures::join!(
            first.try_decrease(&twice, 60),
            second.try_decrease(&twice, 60)
        );
        assert!(x.unwrap() && y.unwrap());
        let (cp, dp, _) = tb::limit_balance(&twice).await;
        assert_eq!(cp - dp, 60);
    })
    .await;
}
