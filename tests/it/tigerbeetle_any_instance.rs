//! Several instances on one TigerBeetle server: a lease reserved on one is completed on
//! another with the same effect as on the reserving one (a freed slot, slack given back,
//! the same debt), exactly once however many instances receive the complete, with the
//! window in force at reserve time; a lease the ledger does not know is a no-op. The last
//! test does it with two real `ratelimiterd` daemons over HTTP.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::bound::bounded;
use crate::support::daemon::Daemon;
use crate::support::limits::{concurrency, rolling};
use crate::support::tigerbeetle::{self as tb, LeaseTransfer};
use crate::tigerbeetle_backend::{complete, instance, key, reserve, reserve_lease};
use ratelimiter::backend::Backend;
use ratelimiter::model::{CompleteCommand, LeaseId, LimitDefinition};
use ratelimiter::service::LimiterService;

/// The debt recorded on `key`: (debits_posted, credits_posted) of its debt account.
async fn debt(key: &str) -> (u128, u128) {
    let account = tb::debt_account(key).await.expect("debt account exists");
    (account.debits_posted(), account.credits_posted())
}

#[actix_rt::test]
async fn a_complete_on_another_instance_frees_a_concurrency_slot_at_once() {
    bounded(60, async {
        let k = key("slot");
        let def = concurrency(&k, 1, 600);
        let (a, _) = instance(std::slice::from_ref(&def)).await;
        let (b, _) = instance(&[def]).await;
        let (lease, answer) = reserve(&a, &[(&k, 1)]).await;
        assert!(answer.allowed);
        assert!(
            !reserve(&b, &[(&k, 1)]).await.1.allowed,
            "the slot is taken"
        );

        let started = Instant::now();
        complete(&b, lease, &[]).await;
        let (_, next) = reserve(&b, &[(&k, 1)]).await;
        assert!(next.allowed, "the slot is free at once, not after 600 s");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(tb::lease_transfer(LeaseTransfer::Void, lease, &k)
            .await
            .is_some());
        assert_eq!(tb::limit_balance(&k).await, (1, 0, 1));
    })
    .await;
}

#[actix_rt::test]
async fn a_shrink_on_another_instance_gives_the_slack_back_until_the_reserves_window_ends() {
    bounded(60, async {
        let k = key("shrink");
        let def = rolling(&k, 100, 60);
        let (a, _) = instance(std::slice::from_ref(&def)).await;
        let (b, _) = instance(&[def]).await;
        let (lease, _) = reserve(&a, &[(&k, 100)]).await;
        complete(&b, lease, &[(&k, 30)]).await;
        assert_eq!(tb::limit_balance(&k).await, (100, 0, 30));
        assert!(
            reserve(&b, &[(&k, 70)]).await.1.allowed,
            "slack free at once"
        );
        let rereserve = tb::lease_transfer(LeaseTransfer::Rereserve, lease, &k)
            .await
            .expect("re-reservation exists");
        assert_eq!(rereserve.amount(), 30);
        assert!(
            (60..=61).contains(&rereserve.timeout()),
            "until the reserve's window ends: {}",
            rereserve.timeout()
        );
    })
    .await;
}

#[actix_rt::test]
async fn an_overage_on_another_instance_records_the_same_debt_as_on_the_reserving_one() {
    bounded(60, async {
        let (here, there, fits) = (key("debt-here"), key("debt-there"), key("fits-there"));
        let defs = [
            rolling(&here, 100, 60),
            rolling(&there, 100, 60),
            rolling(&fits, 100, 60),
        ];
        let (a, _) = instance(&defs).await;
        let (b, _) = instance(&defs).await;
        let (on_a, _) = reserve(&a, &[(&here, 100)]).await;
        complete(&a, on_a, &[(&here, 150)]).await;
        let (on_b, _) = reserve(&a, &[(&there, 100)]).await;
        complete(&b, on_b, &[(&there, 150)]).await;
        assert_eq!(debt(&here).await, (50, 0));
        assert_eq!(debt(&there).await, debt(&here).await);
        assert_eq!(
            tb::limit_balance(&there).await,
            tb::limit_balance(&here).await
        );

        // An overage that fits is re-reserved for the rest of the reserve's window.
        let (lease, _) = reserve(&a, &[(&fits, 10)]).await;
        complete(&b, lease, &[(&fits, 30)]).await;
        let overage = tb::lease_transfer(LeaseTransfer::Rereserve, lease, &fits)
            .await
            .expect("overage pending exists");
        assert_eq!(overage.amount(), 20);
        assert_eq!(tb::limit_balance(&fits).await, (100, 0, 30));
    })
    .await;
}

/// Which instances receive a complete, in what order.
#[derive(Debug, Clone, Copy)]
enum Order {
    ReservingFirst,
    OtherFirst,
    AtOnce,
}

/// Reserves on `a` a lease on fresh keys (a rolling key shrunk from 100 to 30, a full rolling
/// key with an overage of 20 that becomes debt, a concurrency slot), sends its complete to
/// both instances in `order`, and checks the ledger shows it applied once.
async fn complete_on_both(a: &LimiterService, b: &LimiterService, order: Order) {
    let (shrink, over, slot) = (key("once-shrink"), key("once-over"), key("once-slot"));
    let defs = [
        rolling(&shrink, 100, 60),
        rolling(&over, 100, 60),
        concurrency(&slot, 1, 600),
    ];
    for s in [a, b] {
        for def in &defs {
            s.define(def.clone()).await.unwrap();
        }
    }
    let (lease, answer) = reserve(a, &[(&shrink, 100), (&over, 100), (&slot, 1)]).await;
    assert!(answer.allowed);
    let actuals = [(shrink.as_str(), 30), (over.as_str(), 120)];
    let applied = || async {
        assert_eq!(tb::limit_balance(&shrink).await, (100, 0, 30), "{order:?}");
        assert_eq!(tb::limit_balance(&over).await, (100, 0, 100), "{order:?}");
        assert_eq!(debt(&over).await, (20, 0), "{order:?}: the overage, once");
        assert_eq!(tb::limit_balance(&slot).await, (1, 0, 0), "{order:?}");
    };
    match order {
        Order::ReservingFirst | Order::OtherFirst => {
            let (first, second) = match order {
                Order::ReservingFirst => (a, b),
                _ => (b, a),
            };
            complete(first, lease, &actuals).await;
            applied().await;
            complete(second, lease, &actuals).await;
        }
        Order::AtOnce => {
            futures::join!(complete(a, lease, &actuals), complete(b, lease, &actuals));
        }
    }
    applied().await;
    // A complete sent once more to each changes nothing either.
    complete(a, lease, &actuals).await;
    complete(b, lease, &actuals).await;
    applied().await;
}

#[actix_rt::test]
async fn the_same_complete_on_two_instances_applies_once() {
    bounded(60, async {
        let (a, _) = instance(&[]).await;
        let (b, _) = instance(&[]).await;
        for order in [Order::ReservingFirst, Order::OtherFirst, Order::AtOnce] {
            complete_on_both(&a, &b, order).await;
        }
    })
    .await;
}

#[actix_rt::test]
async fn a_lease_the_ledger_does_not_know_is_a_no_op_as_on_the_reserving_instance() {
    bounded(60, async {
        let k = key("unknown");
        let def = concurrency(&k, 1, 600);
        let (a, _) = instance(std::slice::from_ref(&def)).await;
        let (b, _) = instance(&[def]).await;
        let (held, _) = reserve(&a, &[(&k, 1)]).await;
        let (denied, answer) = reserve(&a, &[(&k, 1)]).await;
        assert!(!answer.allowed);
        // Never reserved anywhere, and denied on A: ok on both, nothing changes.
        for s in [&a, &b] {
            complete(s, LeaseId::new(), &[(&k, 1)]).await;
            complete(s, denied, &[]).await;
        }
        assert_eq!(tb::limit_balance(&k).await, (1, 0, 1), "the hold stays");
        assert!(!reserve_lease(&b, denied, &[(&k, 1)]).await.allowed);
        complete(&b, held, &[]).await;
        assert_eq!(tb::limit_balance(&k).await, (1, 0, 0));
    })
    .await;
}

#[actix_rt::test]
async fn a_lease_on_a_key_defined_elsewhere_since_start_is_completed_after_learning_it() {
    bounded(60, async {
        let (known, elsewhere) = (key("known"), key("elsewhere"));
        let (a, _) = instance(&[concurrency(&known, 1, 600)]).await;
        let (b, b_backend) = instance(&[concurrency(&known, 1, 600)]).await;
        // Defined on A after B started: B has not followed it yet.
        a.define(concurrency(&elsewhere, 1, 600)).await.unwrap();
        let (lease, _) = reserve(&a, &[(&known, 1), (&elsewhere, 1)]).await;
        let error = b_backend
            .complete(CompleteCommand {
                lease,
                job_id: None,
                actuals: vec![],
            })
            .await
            .expect_err("the backend alone cannot complete a key it does not know");
        let message = error.to_string();
        assert!(message.contains(&lease.to_string()), "{message}");
        assert!(
            message.contains("no key defined on this instance"),
            "{message}"
        );
        assert_eq!(
            tb::limit_balance(&known).await,
            (1, 0, 1),
            "nothing released"
        );
        assert_eq!(tb::limit_balance(&elsewhere).await, (1, 0, 1));
        // The service learns the cluster's definitions and completes.
        complete(&b, lease, &[]).await;
        assert_eq!(tb::limit_balance(&known).await, (1, 0, 0));
        assert_eq!(tb::limit_balance(&elsewhere).await, (1, 0, 0));
        assert!(b.get(&elsewhere).await.unwrap().is_some(), "B knows it now");
    })
    .await;
}

#[actix_rt::test]
async fn a_window_changed_after_the_reserve_does_not_move_its_end() {
    bounded(60, async {
        let (here, there) = (key("window-here"), key("window-there"));
        let long = [rolling(&here, 100, 60), rolling(&there, 100, 60)];
        let (a, _) = instance(&long).await;
        let (b, _) = instance(&long).await;
        let (on_a, _) = reserve(&a, &[(&here, 100)]).await;
        let (on_b, _) = reserve(&a, &[(&there, 100)]).await;
        // The window drops to 1 s; the reservations keep their 60 s.
        let short = |k: &str| LimitDefinition::rolling(k, 100, 1);
        for s in [&a, &b] {
            s.define(short(&here)).await.unwrap();
            s.define(short(&there)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        complete(&a, on_a, &[(&here, 30)]).await;
        complete(&b, on_b, &[(&there, 30)]).await;
        for k in [&here, &there] {
            assert_eq!(tb::limit_balance(k).await, (100, 0, 30), "{k}: shrunk");
            let lease = if k == &here { on_a } else { on_b };
            let rereserve = tb::lease_transfer(LeaseTransfer::Rereserve, lease, k)
                .await
                .expect("re-reservation exists");
            assert!(
                (58..=60).contains(&rereserve.timeout()),
                "{k}: the rest of the 60 s window: {}",
                rereserve.timeout()
            );
        }
    })
    .await;
}

#[actix_rt::test]
async fn a_reserve_replayed_on_another_instance_keeps_the_first_reserves_window() {
    bounded(60, async {
        let k = key("replayed");
        let def = rolling(&k, 100, 60);
        let (a, _) = instance(std::slice::from_ref(&def)).await;
        let (b, _) = instance(&[def]).await;
        let lease = LeaseId::new();
        assert!(reserve_lease(&a, lease, &[(&k, 100)]).await.allowed);
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        // A client retrying on B: allowed again, nothing more taken, and B's complete
        // shrinks until the first reserve's window ends, not 61 s after the replay.
        assert!(reserve_lease(&b, lease, &[(&k, 100)]).await.allowed);
        assert_eq!(tb::limit_balance(&k).await, (100, 0, 100));
        complete(&b, lease, &[(&k, 30)]).await;
        assert_eq!(tb::limit_balance(&k).await, (100, 0, 30));
        let rereserve = tb::lease_transfer(LeaseTransfer::Rereserve, lease, &k)
            .await
            .expect("re-reservation exists");
        assert!(
            rereserve.timeout() <= 59,
            "61 s from the first reserve, 2 s ago: {}",
            rereserve.timeout()
        );
    })
    .await;
}

/// A `ratelimiterd` on the shared TigerBeetle server, with its own registry in `dir`.
fn daemon_on_tigerbeetle(dir: &std::path::Path) -> Daemon {
    let registry = dir.join("limits.json");
    let address = tb::shared().address();
    let args = [
        "--registry",
        registry.to_str().unwrap(),
        "--backend",
        "tigerbeetle",
        "--tb-cluster",
        "0",
        "--tb-addresses",
        &address,
    ];
    Daemon::start_local(dir, &args)
}

#[tokio::test]
async fn two_daemons_behind_a_round_robin_complete_each_others_leases_over_http() {
    bounded(60, async {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            daemon_on_tigerbeetle(dir_a.path()),
            daemon_on_tigerbeetle(dir_b.path()),
        );
        let (slot, tokens) = (key("http-slot"), key("http-tokens"));
        for d in [&a, &b] {
            d.define(json!({"key": slot, "kind": "concurrency", "capacity": 1,
                "timeout_seconds": 600}))
                .await;
            d.define(json!({"key": tokens, "kind": "rolling", "capacity": 100,
                "window_seconds": 60}))
                .await;
        }
        let (held, used) = (LeaseId::new().to_string(), LeaseId::new().to_string());
        assert_eq!(a.reserve(&held, &slot, 1).await["allowed"], true);
        assert_eq!(a.reserve(&used, &tokens, 100).await["allowed"], true);
        let denied = b.reserve(&LeaseId::new().to_string(), &slot, 1).await;
        assert_eq!(denied["allowed"], false, "{denied}");

        b.complete(&held, &[]).await;
        b.complete(&used, &[(&tokens, 40)]).await;
        a.complete(&used, &[(&tokens, 40)]).await;
        assert_eq!(b.in_use(&slot).await, 0, "the slot is free at once");
        assert_eq!(a.in_use(&tokens).await, 40, "the slack is back, once");
        let next = b.reserve(&LeaseId::new().to_string(), &slot, 1).await;
        assert_eq!(next["allowed"], true, "{next}");
        assert_eq!(
            a.reserve(&LeaseId::new().to_string(), &tokens, 60).await["allowed"],
            true
        );
    })
    .await;
}
