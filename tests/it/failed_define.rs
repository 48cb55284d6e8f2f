//! A definition whose registry save fails leaves no trace in the backend: no key actor, no
//! TigerBeetle account. So a later definition of the same key with the other kind starts
//! clean, and its `complete` treats reservations by the kind in force (a rolling
//! reservation is kept to the end of its window, never released as a concurrency hold).

use std::path::Path;
use std::sync::Arc;

use ratelimiter::actors::MemoryBackend;
use ratelimiter::backend::Backend;
use ratelimiter::model::{
    Actual, CompleteRequest, LeaseId, LimitDefinition, LimitStatus, ManualClock, Requirement,
    ReserveRequest, RetryPolicy,
};
use ratelimiter::registry::Registry;
use ratelimiter::service::{AdminError, LimiterService, RegistrySource, ServiceSettings};

use crate::support::bound::bounded;

/// A registry whose saves fail while a directory squats on its temporary file's name.
fn blocked_registry(dir: &Path) -> Registry {
    std::fs::create_dir(dir.join("limits.json.tmp")).unwrap();
    Registry::new(dir.join("limits.json"))
}

fn unblock(dir: &Path) {
    std::fs::remove_dir(dir.join("limits.json.tmp")).unwrap();
}

async fn reserve(service: &LimiterService, lease: LeaseId, key: &str, amount: u64) -> bool {
    let request = ReserveRequest {
        lease_id: lease.to_string(),
        job_id: None,
        requirements: vec![Requirement {
            key: key.to_string().into(),
            amount,
        }],
    };
    let answer = service.reserve(&request).await.unwrap();
    assert_eq!(answer.error, "", "{answer:?}");
    answer.allowed
}

/// The scenario on any backend: a concurrency key whose save fails, then the same key
/// defined as rolling once the registry can be written again.
async fn failed_define_leaves_no_trace(backend: Arc<dyn Backend>, key: &str, dir: &Path) {
    let service = LimiterService::start(
        backend.clone(),
        RegistrySource::File(blocked_registry(dir)),
        Vec::new(),
        ServiceSettings::default(),
    )
    .await
    .unwrap();
    let err = service
        .define(LimitDefinition::concurrency(key, 5, 600))
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::Registry(_)), "{err}");
    assert!(service.get(key).await.unwrap().is_none());
    assert!(
        backend.usage(key).await.is_err(),
        "the backend never saw the key"
    );
    assert!(!dir.join("limits.json").exists());

    unblock(dir);
    let status = service
        .define(LimitDefinition::rolling(key, 5, 60))
        .await
        .expect("the key is new: any kind is accepted");
    assert_eq!(status, LimitStatus::Active);
    let lease = LeaseId::new();
    assert!(reserve(&service, lease, key, 5).await);
    let complete = CompleteRequest {
        lease_id: lease.to_string(),
        job_id: None,
        actuals: vec![Actual {
            key: key.to_string().into(),
            actual_amount: 5,
        }],
    };
    assert!(service.complete(&complete).await.unwrap().ok);
    let usage = service.get(key).await.unwrap().unwrap().usage;
    assert_eq!(
        (usage.in_use, usage.available),
        (5, 0),
        "the rolling reservation is kept after complete"
    );
    assert!(!reserve(&service, LeaseId::new(), key, 1).await);
    let saved = Registry::new(dir.join("limits.json")).load().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].definition, LimitDefinition::rolling(key, 5, 60));
}

#[actix_rt::test]
async fn failed_save_of_a_new_key_leaves_no_trace_in_the_memory_backend() {
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let backend = MemoryBackend::start(ManualClock::new(0), RetryPolicy::default());
        failed_define_leaves_no_trace(backend, "tenant:t:daily", dir.path()).await;
    })
    .await;
}

/// On TigerBeetle the definitions live in the cluster (shared by every instance), so the
/// save that can fail is the cluster's: a definition it refuses (too large for one record)
/// leaves no trace, the same key then takes the other kind, and the registry file is never
/// written; a second instance started on the cluster finds the definition in force.
#[cfg(feature = "tigerbeetle")]
#[actix_rt::test]
async fn a_definition_the_cluster_refuses_leaves_no_trace_in_tigerbeetle() {
    use crate::support::tigerbeetle as tb;
    use ratelimiter::definitions::StoreError;
    bounded(30, async {
        let dir = tempfile::tempdir().unwrap();
        let connect = || async {
            ratelimiter::tigerbeetle::TigerBeetleBackend::connect(
                tb::config(tb::shared()),
                Arc::new(ratelimiter::model::SystemClock),
                RetryPolicy::default(),
            )
            .await
            .expect("TigerBeetle backend connects")
        };
        let backend = connect().await;
        let service = LimiterService::start(
            backend.clone(),
            RegistrySource::File(Registry::new(dir.path().join("limits.json"))),
            Vec::new(),
            ServiceSettings::default(),
        )
        .await
        .unwrap();
        let key = format!("it:{}:daily", LeaseId::new());
        let mut too_large = LimitDefinition::concurrency(&key, 5, 600);
        too_large.description = "x".repeat(10_000);
        let err = service.define(too_large).await.unwrap_err();
        assert!(
            matches!(err, AdminError::Shared(StoreError::TooLarge { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("shorten description"), "{err}");
        assert!(service.get(&key).await.unwrap().is_none());
        assert!(backend.usage(&key).await.is_err(), "no account was created");
        assert!(tb::limit_account(&key).await.is_none());

        let status = service
            .define(LimitDefinition::rolling(&key, 5, 60))
            .await
            .expect("the key is new: any kind is accepted");
        assert_eq!(status, LimitStatus::Active);
        let lease = LeaseId::new();
        assert!(reserve(&service, lease, &key, 5).await);
        let complete = CompleteRequest {
            lease_id: lease.to_string(),
            job_id: None,
            actuals: vec![Actual {
                key: key.clone().into(),
                actual_amount: 5,
            }],
        };
        assert!(service.complete(&complete).await.unwrap().ok);
        let usage = service.get(&key).await.unwrap().unwrap().usage;
        assert_eq!(
            (usage.in_use, usage.available),
            (5, 0),
            "kept to the window's end"
        );
        assert!(!reserve(&service, LeaseId::new(), &key, 1).await);
        assert!(
            !dir.path().join("limits.json").exists(),
            "definitions live in the cluster, not in the registry file"
        );

        let other = LimiterService::in_memory(connect().await).await.unwrap();
        assert_eq!(
            other.definition(&key),
            Some(LimitDefinition::rolling(&key, 5, 60)),
            "a second instance learns the definition from the cluster"
        );
        assert!(
            !reserve(&other, LeaseId::new(), &key, 1).await,
            "and shares its capacity"
        );
    })
    .await;
}
