//! The service with a registry file: every admin change is persisted, a restart reloads
//! definitions and resumes a pending decrease, a limits file seeds only missing keys and is
//! never written, and a change whose save fails changes nothing.

use std::path::Path;
use std::sync::Arc;

use crate::support::bound::bounded;
use crate::support::limits::rolling;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{
    LeaseId, LimitDefinition, LimitKind, LimitState, LimitStatus, ManualClock, Requirement,
    ReserveRequest, RetryPolicy,
};
use ratelimiter::registry::Registry;
use ratelimiter::service::{
    AdminError, LimiterService, RegistrySource, ServiceSettings, StartError,
};

async fn start(path: &Path, seed: Vec<LimitState>) -> Result<Arc<LimiterService>, StartError> {
    let backend = MemoryBackend::start(ManualClock::new(0), RetryPolicy::default());
    LimiterService::start(
        backend,
        RegistrySource::File(Registry::new(path)),
        seed,
        ServiceSettings::default(),
    )
    .await
}

#[actix_rt::test]
async fn admin_changes_are_persisted_and_reloaded() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        let service = start(&path, vec![]).await.unwrap();
        service.define(rolling("a", 5, 60)).await.unwrap();
        service.define(rolling("b", 7, 60)).await.unwrap();
        let on_disk = Registry::new(&path).load().unwrap();
        assert_eq!(on_disk.len(), 2);
        assert!(!dir.path().join("limits.json.tmp").exists());

        let restarted = start(&path, vec![]).await.unwrap();
        let info = restarted.get("b").await.unwrap().unwrap();
        assert_eq!(info.state.definition.capacity, 7);
    })
    .await;
}

#[actix_rt::test]
async fn restart_resumes_a_pending_decrease() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        let service = start(&path, vec![]).await.unwrap();
        service.define(rolling("k", 100, 60)).await.unwrap();
        let lease = LeaseId::new();
        let request = ReserveRequest::new(lease, vec![Requirement::new("k", 80)]);
        assert!(service.reserve(&request).await.unwrap().allowed);
        assert_eq!(
            service.define(rolling("k", 60, 60)).await.unwrap(),
            LimitStatus::Decreasing
        );
        assert_eq!(service.apply_pending_decreases().await, 0);
        drop(service);

        let restarted = start(&path, vec![]).await.unwrap();
        let info = restarted.get("k").await.unwrap().unwrap();
        assert_eq!(info.state.status, LimitStatus::Decreasing);
        assert_eq!(info.state.pending_decrease_to, 60);
        let blocked = ReserveRequest::new(LeaseId::new(), vec![Requirement::new("k", 1)]);
        assert_eq!(
            restarted.reserve(&blocked).await.unwrap().error,
            "limit_decreasing:k"
        );
        // The reservations of the old process are gone with its memory: the decrease applies.
        assert_eq!(restarted.apply_pending_decreases().await, 1);
        let on_disk = Registry::new(&path).load().unwrap();
        assert_eq!(on_disk[0], LimitState::active(rolling("k", 60, 60)));
    })
    .await;
}

#[actix_rt::test]
async fn limits_file_seeds_only_missing_keys() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        let service = start(&path, vec![]).await.unwrap();
        service.define(rolling("a", 5, 60)).await.unwrap();
        drop(service);
        let seed = vec![
            LimitState::active(rolling("a", 999, 60)),
            LimitState::active(rolling("c", 3, 60)),
        ];
        let restarted = start(&path, seed).await.unwrap();
        assert_eq!(
            restarted
                .get("a")
                .await
                .unwrap()
                .unwrap()
                .state
                .definition
                .capacity,
            5
        );
        assert_eq!(
            restarted
                .get("c")
                .await
                .unwrap()
                .unwrap()
                .state
                .definition
                .capacity,
            3
        );
        assert_eq!(Registry::new(&path).load().unwrap().len(), 2);
    })
    .await;
}

#[actix_rt::test]
async fn corrupt_registry_stops_start_and_is_kept() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = start(&path, vec![LimitState::active(rolling("a", 1, 60))])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("limits.json"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
    })
    .await;
}

#[actix_rt::test]
async fn failed_save_changes_nothing() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        // A directory squats on the temporary file's name, so every save fails.
        let path = dir.path().join("limits.json");
        std::fs::create_dir(dir.path().join("limits.json.tmp")).unwrap();
        let service = start(&path, vec![]).await.unwrap();
        let err = service.define(rolling("a", 5, 60)).await.unwrap_err();
        assert!(matches!(err, AdminError::Registry(_)), "{err}");
        assert!(service.get("a").await.unwrap().is_none());
        assert!(service.list().await.unwrap().is_empty());
    })
    .await;
}

#[actix_rt::test]
async fn invalid_definitions_and_kind_changes_change_nothing() {
    bounded(10, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        let service = start(&path, vec![]).await.unwrap();
        service.define(rolling("a", 5, 60)).await.unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        let err = service.define(rolling("a", 0, 60)).await.unwrap_err();
        assert!(err.to_string().starts_with("capacity"), "{err}");
        let concurrency = LimitDefinition {
            kind: LimitKind::Concurrency,
            window_seconds: 0,
            timeout_seconds: 5,
            ..rolling("a", 5, 60)
        };
        let err = service.define(concurrency).await.unwrap_err();
        assert!(err.to_string().starts_with("kind"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert_eq!(
            service.get("a").await.unwrap().unwrap().state,
            LimitState::active(rolling("a", 5, 60))
        );
    })
    .await;
}
