//! The local client over the in-process memory backend: construction from a limits file or
//! inline states (with errors naming the entry), the limiter semantics through it, and the
//! scheduler embedded over it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::limits::{concurrency, rolling};
use futures::future::join_all;
use futures::FutureExt;
use ratelimiter::client::{
    concurrency_key, rpm_key, tpm_key, JobOutput, JobSpec, Limiter, LimiterError, LocalLimiter,
    LocalLimiterError, SchedulerConfig, SchedulerHandle,
};
use ratelimiter::model::{
    Actual, CompleteRequest, LeaseId, LimitState, ManualClock, Requirement, ReserveRequest,
    SystemClock,
};

fn reserve(key: &str, amount: u64) -> ReserveRequest {
    ReserveRequest::new(LeaseId::new(), vec![Requirement::new(key, amount)])
}

#[actix_rt::test]
async fn inline_states_enforce_limits_on_the_injected_clock() {
    bounded(5, async {
        let clock = ManualClock::new(1_000_000);
        let limiter =
            LocalLimiter::from_states(vec![LimitState::active(rolling("k", 2, 60))], clock.clone())
                .await
                .unwrap();
        assert!(limiter.reserve(reserve("k", 1)).await.unwrap().allowed);
        assert!(limiter.reserve(reserve("k", 1)).await.unwrap().allowed);
        let denied = limiter.reserve(reserve("k", 1)).await.unwrap();
        assert!(!denied.allowed);
        assert!(denied.retry_after_ms > 0);
        clock.advance_ms(61_000);
        assert!(limiter.reserve(reserve("k", 1)).await.unwrap().allowed);
        let unknown = limiter.reserve(reserve("nope", 1)).await.unwrap();
        assert_eq!(unknown.error, "unknown_limit_key:nope");
    })
    .await;
}

#[actix_rt::test]
async fn invalid_requests_are_rejected_and_batches_answer_in_order() {
    bounded(5, async {
        let limiter = LocalLimiter::from_states(
            vec![LimitState::active(rolling("k", 1, 60))],
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let mut bad = reserve("k", 1);
        bad.lease_id = "not-a-ulid".into();
        match limiter.reserve(bad.clone()).await {
            Err(LimiterError::Rejected(message)) => assert!(message.starts_with("lease_id")),
            other => panic!("expected a rejection, got {other:?}"),
        }
        let answers = limiter
            .batch_reserve(vec![reserve("k", 1), reserve("k", 1), bad])
            .await
            .unwrap();
        assert!(answers[0].allowed);
        assert!(!answers[1].allowed && answers[1].error.is_empty());
        assert_eq!(answers[2].error, "invalid_request");
        let done = limiter
            .complete(CompleteRequest::new(
                LeaseId::new(),
                vec![Actual::new("k", 0)],
            ))
            .await
            .unwrap();
        assert!(
            done.ok,
            "a complete for an unknown lease is a harmless no-op"
        );
    })
    .await;
}

#[actix_rt::test]
async fn inline_state_errors_name_the_entry() {
    bounded(5, async {
        let clock = Arc::new(SystemClock);
        let duplicate = LocalLimiter::from_states(
            vec![
                LimitState::active(rolling("a", 1, 60)),
                LimitState::active(rolling("a", 2, 60)),
            ],
            clock.clone(),
        )
        .await
        .unwrap_err();
        assert!(matches!(
            duplicate,
            LocalLimiterError::DuplicateKey { index: 1, .. }
        ));
        assert_eq!(
            duplicate.to_string(),
            "limits[1]: key \"a\" is defined twice"
        );

        let invalid = LocalLimiter::from_states(
            vec![
                LimitState::active(rolling("a", 1, 60)),
                LimitState::active(rolling("b", 0, 60)),
            ],
            clock,
        )
        .await
        .unwrap_err();
        let message = invalid.to_string();
        assert!(
            message.starts_with("limits[1] (\"b\"): capacity"),
            "{message}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn a_limits_file_seeds_the_local_limiter() {
    bounded(5, async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        std::fs::write(
            &path,
            serde_json::to_string(&vec![LimitState::active(rolling("k", 1, 60))]).unwrap(),
        )
        .unwrap();
        let limiter = LocalLimiter::from_limits_file(&path, Arc::new(SystemClock))
            .await
            .unwrap();
        assert!(limiter.reserve(reserve("k", 1)).await.unwrap().allowed);
        assert!(!limiter.reserve(reserve("k", 1)).await.unwrap().allowed);
        let info = limiter.service().get("k").await.unwrap().unwrap();
        assert_eq!(info.usage.in_use, 1);

        let missing = dir.path().join("missing.json");
        let error = LocalLimiter::from_limits_file(&missing, Arc::new(SystemClock))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("missing.json"), "{error}");
    })
    .await;
}

#[actix_rt::test]
async fn the_embedded_scheduler_never_exceeds_a_concurrency_limit() {
    bounded(5, async {
        let states = vec![
            LimitState::active(rolling(&rpm_key("p", "m"), 1_000, 60)),
            LimitState::active(rolling(&tpm_key("p", "m"), 1_000_000, 60)),
            LimitState::active(concurrency(&concurrency_key("p", "m"), 1, 30)),
        ];
        let limiter = LocalLimiter::from_states(states, Arc::new(SystemClock))
            .await
            .unwrap();
        let config = SchedulerConfig {
            workers: 3,
            jitter_ms: 0,
            ..SchedulerConfig::default()
        };
        let scheduler = SchedulerHandle::start(Arc::new(limiter.clone()), config);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let jobs = (0..4).map(|i| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            scheduler.run(JobSpec::new("p", "m", 100, 50), move || {
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    JobOutput {
                        value: i,
                        actual_tokens: 40,
                    }
                }
                .boxed()
            })
        });
        let results = join_all(jobs).await;
        assert_eq!(results, (0..4).map(Ok).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        // Each complete shrank the tpm reservation to the reported 40 tokens.
        let tpm = limiter
            .service()
            .get(&tpm_key("p", "m"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tpm.usage.in_use, 4 * 40);
        let held = limiter
            .service()
            .get(&concurrency_key("p", "m"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.usage.in_use, 0);
    })
    .await;
}
