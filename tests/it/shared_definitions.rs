//! Several services on one TigerBeetle cluster share their definitions (the cluster is the
//! registry), and the capacity the ledger holds converges to the definitions after a
//! failure. Each "instance" here is a `LimiterService` with its own `TigerBeetleBackend`
//! (its own client and book), as separate `ratelimiterd` processes would have.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratelimiter::backend::Backend;
use ratelimiter::model::{
    LeaseId, LimitDefinition, LimitState, LimitStatus, Requirement, ReserveRequest,
};
use ratelimiter::service::LimiterService;
use ratelimiter::tigerbeetle::TigerBeetleBackend;

use crate::support::bound::bounded;
use crate::support::tigerbeetle as tb;
use crate::tigerbeetle_backend::backend;

async fn instance() -> (Arc<LimiterService>, Arc<TigerBeetleBackend>) {
    let backend = backend().await;
    let service = LimiterService::in_memory(backend.clone()).await.unwrap();
    (service, backend)
}

fn key(name: &str) -> String {
    format!("shared:{}:{name}", LeaseId::new())
}

async fn reserve(service: &LimiterService, key: &str, amount: u64) -> (bool, String) {
    let request = ReserveRequest {
        lease_id: LeaseId::new().to_string(),
        job_id: None,
        requirements: vec![Requirement {
            key: key.to_string().into(),
            amount,
        }],
    };
    let answer = service.reserve(&request).await.unwrap();
    (answer.allowed, answer.error)
}

/// Runs control ticks on `services` until the async condition holds; panics after `within`;
/// evaluates to how long it took.
macro_rules! tick_until {
    ([$($service:expr),+], $within:expr, $what:expr, $done:expr) => {{
        let start = Instant::now();
        loop {
            $( $service.control_tick().await; )+
            if $done {
                break start.elapsed();
            }
            assert!(start.elapsed() < $within, "not within {:?}: {}", $within, $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// Two instances, the definition made on the first and learnt by the second.
async fn pair_knowing(definition: LimitDefinition) -> (Arc<LimiterService>, Arc<LimiterService>) {
    let (a, _) = instance().await;
    let (b, _) = instance().await;
    let k = definition.key.clone();
    a.define(definition).await.unwrap();
    tick_until!(
        [b],
        Duration::from_secs(2),
        "B learns the key",
        b.definition(&k).is_some()
    );
    (a, b)
}

/// The state `service` reports for `key` (status, capacity in force, target).
async fn state_of(service: &LimiterService, key: &str) -> Option<(LimitStatus, u64, u64)> {
    service.get(key).await.ok().flatten().map(|i| {
        (
            i.state.status,
            i.state.definition.capacity,
            i.state.pending_decrease_to,
        )
    })
}

/// The ledger's capacity of `key` (funded minus given back).
async fn held(key: &str) -> u128 {
    let (credits, debits, _) = tb::limit_balance(key).await;
    credits - debits
}

#[actix_rt::test]
async fn a_limit_defined_on_one_instance_is_in_force_on_another_within_two_seconds() {
    bounded(60, async {
        let (a, _) = instance().await;
        let (b, _) = instance().await;
        let k = key("rpm");
        a.define(LimitDefinition::rolling(&k, 3, 60)).await.unwrap();
        assert_eq!(reserve(&b, &k, 1).await.1, format!("unknown_limit_key:{k}"));
        let took = tick_until!(
            [b],
            Duration::from_secs(2),
            "B learns the key",
            b.definition(&k).is_some()
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
        let info = b.get(&k).await.unwrap().expect("GET on B knows the key");
        assert_eq!(info.state.definition, LimitDefinition::rolling(&k, 3, 60));
        assert!(b
            .list()
            .await
            .unwrap()
            .iter()
            .any(|l| l.state.definition.key == k));
        // One capacity: two on B and one on A use it up.
        assert!(reserve(&b, &k, 2).await.0);
        assert!(reserve(&a, &k, 1).await.0);
        assert!(!reserve(&b, &k, 1).await.0);
        assert!(!reserve(&a, &k, 1).await.0);

        // A change made on B is in force on A.
        b.define(LimitDefinition::rolling(&k, 5, 60)).await.unwrap();
        tick_until!(
            [a],
            Duration::from_secs(2),
            "A learns the increase",
            a.definition(&k).is_some_and(|d| d.capacity == 5)
        );
        assert!(reserve(&a, &k, 2).await.0, "the increase is funded once");
        assert_eq!(held(&k).await, 5);
    })
    .await;
}

#[actix_rt::test]
async fn a_decrease_started_anywhere_shows_everywhere_and_applies_once() {
    bounded(60, async {
        let k = key("tpm");
        let (a, b) = pair_knowing(LimitDefinition::rolling(&k, 10, 60)).await;
        // 8 in use: a decrease to 4 must wait.
        assert!(reserve(&a, &k, 8).await.0);
        let status = b.define(LimitDefinition::rolling(&k, 4, 60)).await.unwrap();
        assert_eq!(status, LimitStatus::Decreasing);
        tick_until!(
            [a, b],
            Duration::from_secs(2),
            "A shows decreasing",
            state_of(&a, &k)
                .await
                .is_some_and(|s| s.0 == LimitStatus::Decreasing)
        );
        assert_eq!(
            reserve(&a, &k, 1).await.1,
            format!("limit_decreasing:{k}"),
            "both instances deny while decreasing"
        );
        assert_eq!(held(&k).await, 10, "not applied while in use");
        assert_eq!(
            b.get(&k).await.unwrap().unwrap().state.pending_decrease_to,
            4
        );
    })
    .await;
}

#[actix_rt::test]
async fn a_decrease_that_fits_is_applied_once_whichever_instance_ticks() {
    bounded(60, async {
        let k = key("conc");
        let (a, b) = pair_knowing(LimitDefinition::concurrency(&k, 6, 60)).await;
        b.define(LimitDefinition::concurrency(&k, 2, 60))
            .await
            .unwrap();
        tick_until!(
            [a, b],
            Duration::from_secs(5),
            "both active at 2",
            state_of(&a, &k).await == Some((LimitStatus::Active, 2, 0))
                && state_of(&b, &k).await == Some((LimitStatus::Active, 2, 0))
        );
        assert_eq!(held(&k).await, 2, "given back exactly once");
        assert!(reserve(&a, &k, 2).await.0);
        assert!(!reserve(&b, &k, 1).await.0);
    })
    .await;
}

#[actix_rt::test]
async fn concurrent_changes_of_one_key_on_two_instances_both_land_in_order() {
    bounded(60, async {
        let k = key("race");
        let (a, b) = pair_knowing(LimitDefinition::rolling(&k, 10, 60)).await;
        let mut on_a = LimitDefinition::rolling(&k, 20, 60);
        on_a.description = "from A".into();
        let mut on_b = LimitDefinition::rolling(&k, 30, 60);
        on_b.description = "from B".into();
        let (ra, rb) = futures::join!(a.define(on_a.clone()), b.define(on_b.clone()));
        ra.unwrap();
        rb.unwrap();
        tick_until!(
            [a, b],
            Duration::from_secs(2),
            "both agree",
            a.definition(&k).is_some() && a.definition(&k) == b.definition(&k)
        );
        let last = a.definition(&k).unwrap();
        assert!(last == on_a || last == on_b, "{last:?}");
        assert_eq!(held(&k).await, u128::from(last.capacity));
    })
    .await;
}

#[actix_rt::test]
async fn an_instance_started_with_an_empty_registry_learns_every_limit() {
    bounded(60, async {
        let (a, _) = instance().await;
        let keys: Vec<String> = (0..5).map(|i| key(&format!("k{i}"))).collect();
        for (i, k) in keys.iter().enumerate() {
            a.define(LimitDefinition::rolling(k, 10 + i as u64, 60))
                .await
                .unwrap();
        }
        let (fresh, _) = instance().await;
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                fresh.definition(k),
                Some(LimitDefinition::rolling(k, 10 + i as u64, 60))
            );
        }
    })
    .await;
}

#[actix_rt::test]
async fn capacity_funded_but_never_defined_is_given_back() {
    bounded(60, async {
        let (a, backend) = instance().await;
        let k = key("excess");
        a.define(LimitDefinition::rolling(&k, 10, 60))
            .await
            .unwrap();
        // An increase whose save failed, or a PUT that timed out after its funding landed:
        // the ledger holds 25 while 10 is defined.
        backend
            .define(&LimitState::active(LimitDefinition::rolling(&k, 25, 60)))
            .await
            .unwrap();
        assert_eq!(held(&k).await, 25);
        tick_until!(
            [a],
            Duration::from_secs(5),
            "excess given back",
            held(&k).await == 10
        );
        assert!(reserve(&a, &k, 10).await.0);
        assert!(!reserve(&a, &k, 1).await.0, "never more than defined");
    })
    .await;
}

#[actix_rt::test]
async fn excess_capacity_in_use_becomes_a_decrease_that_applies_once_free() {
    bounded(60, async {
        let (a, backend) = instance().await;
        let k = key("excess-used");
        a.define(LimitDefinition::concurrency(&k, 4, 60))
            .await
            .unwrap();
        backend
            .define(&LimitState::active(LimitDefinition::concurrency(&k, 9, 60)))
            .await
            .unwrap();
        // Two holds of 4 (the most one request may take of a capacity of 4): 8 of 9.
        let leases = [LeaseId::new(), LeaseId::new()];
        for lease in leases {
            let request = ReserveRequest {
                lease_id: lease.to_string(),
                job_id: None,
                requirements: vec![Requirement {
                    key: k.clone().into(),
                    amount: 4,
                }],
            };
            assert!(a.reserve(&request).await.unwrap().allowed);
        }
        tick_until!(
            [a],
            Duration::from_secs(5),
            "the key is decreasing",
            state_of(&a, &k)
                .await
                .is_some_and(|s| s.0 == LimitStatus::Decreasing)
        );
        assert_eq!(reserve(&a, &k, 1).await.1, format!("limit_decreasing:{k}"));
        for lease in leases {
            let complete = ratelimiter::model::CompleteRequest {
                lease_id: lease.to_string(),
                job_id: None,
                actuals: Vec::new(),
            };
            assert!(a.complete(&complete).await.unwrap().ok);
        }
        tick_until!(
            [a],
            Duration::from_secs(5),
            "back to 4, active",
            state_of(&a, &k).await == Some((LimitStatus::Active, 4, 0))
        );
        assert_eq!(held(&k).await, 4);
    })
    .await;
}

#[actix_rt::test]
async fn capacity_defined_but_never_funded_is_funded() {
    bounded(60, async {
        let (a, backend) = instance().await;
        let k = key("short");
        a.define(LimitDefinition::rolling(&k, 10, 60))
            .await
            .unwrap();
        // A change saved but whose funding was lost: the ledger holds 3.
        assert!(backend.try_decrease(&k, 3).await.unwrap());
        assert_eq!(held(&k).await, 3);
        tick_until!(
            [a],
            Duration::from_secs(5),
            "funded back to 10",
            held(&k).await == 10
        );
        assert!(reserve(&a, &k, 10).await.0);
    })
    .await;
}
