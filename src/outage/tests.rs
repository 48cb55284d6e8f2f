//! The guard over a fake backend whose reachability the test switches; probes run every
//! 5 ms so recovery is observed quickly, and every wait is bounded.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::backend::{Fault, Outage};
use crate::model::{LeaseId, ManualClock, Requirement};

/// A backend that answers while `up`, and fails with `Unavailable` (at once) while not.
#[derive(Default)]
struct Fake {
    up: AtomicBool,
    calls: AtomicU64,
    probes: AtomicU64,
    probing_now: AtomicUsize,
    most_probing: AtomicUsize,
}

impl Fake {
    fn up() -> Arc<Fake> {
        let fake = Arc::new(Fake::default());
        fake.up.store(true, Ordering::SeqCst);
        fake
    }

    fn answer<T>(&self, value: T) -> Result<T, BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.up.load(Ordering::SeqCst) {
            Ok(value)
        } else {
            Err(BackendError::Unavailable(Outage::Stopped {
                worker: "the fake backend",
            }))
        }
    }
}

#[async_trait]
impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn define(&self, _: &LimitState) -> Result<(), BackendError> {
        self.answer(())
    }
    async fn reserve(&self, _: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        self.answer(ReserveOutcome::Allowed { reserved_at_ms: 1 })
    }
    async fn complete(&self, _: CompleteCommand) -> Result<(), BackendError> {
        self.answer(())
    }
    async fn usage(&self, _: &str) -> Result<Usage, BackendError> {
        self.answer(Usage::default())
    }
    async fn try_decrease(&self, _: &str, _: u64) -> Result<bool, BackendError> {
        self.answer(true)
    }
    async fn probe(&self) -> Result<(), BackendError> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        let now = self.probing_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_probing.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.probing_now.fetch_sub(1, Ordering::SeqCst);
        if self.up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(BackendError::Unavailable(Outage::Stopped {
                worker: "the fake backend's probe",
            }))
        }
    }
}

fn guard(fake: &Arc<Fake>, policy: BackendDownPolicy) -> (OutageGuard, Arc<ManualClock>) {
    let clock = ManualClock::new(1_000_000);
    let settings = OutageSettings {
        policy,
        probe_interval_ms: 5,
        probe_timeout_ms: 50,
    };
    let inner: Arc<dyn Backend> = fake.clone();
    (OutageGuard::new(inner, settings, clock.clone()), clock)
}

fn reserve_command() -> ReserveCommand {
    ReserveCommand {
        lease: LeaseId::new(),
        job_id: None,
        requirements: vec![Requirement::new("k", 1)],
    }
}

fn complete_command() -> CompleteCommand {
    CompleteCommand {
        lease: LeaseId::new(),
        job_id: None,
        actuals: Vec::new(),
    }
}

/// Waits (at most 2 s) until the guard no longer reports an outage.
async fn until_up(guard: &OutageGuard) -> Duration {
    let started = Instant::now();
    while guard.down().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the guard did not recover within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[actix_rt::test]
async fn deny_answers_at_once_while_down_and_recovers_on_the_first_probe() {
    let fake = Fake::up();
    let (guard, _) = guard(&fake, BackendDownPolicy::Deny);
    assert!(guard.reserve(reserve_command()).await.is_ok());
    fake.up.store(false, Ordering::SeqCst);
    let first = guard.reserve(reserve_command()).await.unwrap_err();
    assert!(matches!(first, BackendError::Unavailable(_)), "{first}");
    let down = guard.down().expect("marked down");
    assert_eq!(down.since_ms, 1_000_000);
    let calls = fake.calls.load(Ordering::SeqCst);
    for _ in 0..100 {
        let err = guard.reserve(reserve_command()).await.unwrap_err();
        assert!(matches!(&err, BackendError::Down(m) if m.contains("backend fake is down since")));
        assert!(guard.complete(complete_command()).await.is_err());
        assert!(guard.usage("k").await.is_err());
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        calls,
        "nothing reached the backend while it was down"
    );
    let stats = guard.stats();
    assert_eq!(stats.outages, 1);
    assert_eq!(stats.reserves_refused, 100);
    assert_eq!(stats.completes_dropped, 100);
    assert_eq!(stats.admin_refused, 100);
    assert_eq!(stats.reserves_allowed_unaccounted, 0);
    fake.up.store(true, Ordering::SeqCst);
    until_up(&guard).await;
    assert!(guard.reserve(reserve_command()).await.is_ok());
    assert!(fake.probes.load(Ordering::SeqCst) >= 1);
}

#[actix_rt::test]
async fn allow_answers_allowed_without_calling_the_backend_and_drops_completes() {
    let fake = Fake::up();
    let (guard, clock) = guard(&fake, BackendDownPolicy::Allow);
    fake.up.store(false, Ordering::SeqCst);
    assert!(guard.complete(complete_command()).await.is_err());
    clock.advance_ms(7);
    let calls = fake.calls.load(Ordering::SeqCst);
    for _ in 0..10 {
        let outcome = guard.reserve(reserve_command()).await.unwrap();
        assert_eq!(
            outcome,
            ReserveOutcome::Allowed {
                reserved_at_ms: 1_000_007
            }
        );
        guard.complete(complete_command()).await.unwrap();
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls);
    let stats = guard.stats();
    assert_eq!(stats.reserves_allowed_unaccounted, 10);
    assert_eq!(stats.completes_dropped, 10);
    assert_eq!(stats.reserves_refused, 0);
    // Admin calls never pretend: they fail while down whatever the policy.
    assert!(matches!(
        guard.try_decrease("k", 1).await,
        Err(BackendError::Down(_))
    ));
    fake.up.store(true, Ordering::SeqCst);
    until_up(&guard).await;
    assert_eq!(
        guard.reserve(reserve_command()).await.unwrap(),
        ReserveOutcome::Allowed { reserved_at_ms: 1 }
    );
}

#[actix_rt::test]
async fn probes_run_one_at_a_time_and_only_while_down() {
    let fake = Fake::up();
    let (guard, _) = guard(&fake, BackendDownPolicy::Deny);
    for _ in 0..5 {
        guard.reserve(reserve_command()).await.unwrap();
    }
    assert_eq!(fake.probes.load(Ordering::SeqCst), 0, "no probe while up");
    fake.up.store(false, Ordering::SeqCst);
    let _ = guard
        .define(&crate::model::LimitState::active(rolling()))
        .await;
    // Many callers hit the down backend at once; still a single probe loop.
    let hits = (0..50).map(|_| guard.reserve(reserve_command()));
    futures::future::join_all(hits).await;
    let started = Instant::now();
    while fake.probes.load(Ordering::SeqCst) < 5 {
        assert!(started.elapsed() < Duration::from_secs(2), "probes stopped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(fake.most_probing.load(Ordering::SeqCst), 1);
    assert!(guard.stats().probes_failed >= 4);
    fake.up.store(true, Ordering::SeqCst);
    until_up(&guard).await;
    let after = fake.probes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        fake.probes.load(Ordering::SeqCst),
        after,
        "probing stops once up"
    );
}

#[actix_rt::test]
async fn other_failures_do_not_mark_the_backend_down() {
    struct Refusing;
    #[async_trait]
    impl Backend for Refusing {
        fn name(&self) -> &'static str {
            "refusing"
        }
        async fn define(&self, _: &LimitState) -> Result<(), BackendError> {
            Err(BackendError::Failed(Fault::OpenChain))
        }
        async fn reserve(&self, _: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
            Err(BackendError::Failed(Fault::OpenChain))
        }
        async fn complete(&self, _: CompleteCommand) -> Result<(), BackendError> {
            Ok(())
        }
        async fn usage(&self, _: &str) -> Result<Usage, BackendError> {
            Ok(Usage::default())
        }
        async fn try_decrease(&self, _: &str, _: u64) -> Result<bool, BackendError> {
            Ok(false)
        }
        async fn probe(&self) -> Result<(), BackendError> {
            Ok(())
        }
    }
    let guard = OutageGuard::new(
        Arc::new(Refusing),
        OutageSettings::default(),
        ManualClock::new(0),
    );
    for _ in 0..3 {
        assert!(matches!(
            guard.reserve(reserve_command()).await,
            Err(BackendError::Failed(_))
        ));
    }
    assert!(guard.down().is_none());
    assert_eq!(guard.stats().outages, 0);
}

fn rolling() -> crate::model::LimitDefinition {
    crate::model::LimitDefinition::rolling("k", 10, 60)
}
