//! Faults: TigerBeetle killed under load (answers come fast as `backend_error`, none hang;
//! after a restart on the same data file, reserves are allowed again without restarting the
//! service), a service restarted with reservations it never completed (they hold until they
//! expire, or until a complete read off the ledger releases them), and a backend that cannot reach TigerBeetle at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::limits::of_kind;
use crate::support::tigerbeetle::{self as tb, TbServer, EXPIRY_SLACK_MS};
use ratelimiter::backend::{BackendError, Outage};
use ratelimiter::model::{
    Actual, CompleteRequest, LeaseId, LimitKind, Requirement, ReserveRequest, RetryPolicy,
    SystemClock,
};
use ratelimiter::registry::Registry;
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};
use ratelimiter::tigerbeetle::{TigerBeetleBackend, TigerBeetleSettings, FIRST_CALL_ALLOWANCE};

const CLIENTS: usize = 50;
const REQUEST_TIMEOUT_MS: u64 = 500;
/// Longest acceptable answer while TigerBeetle is down: a request waits at most for the
/// batch in flight and then its own, plus scheduling noise.
const DOWN_ANSWER_BOUND: Duration = Duration::from_millis(2 * REQUEST_TIMEOUT_MS + 700);

async fn service_on(config: TigerBeetleSettings, registry: RegistrySource) -> Arc<LimiterService> {
    let backend =
        TigerBeetleBackend::connect(config, Arc::new(SystemClock), RetryPolicy::default())
            .await
            .expect("TigerBeetle backend connects");
    LimiterService::start(backend, registry, Vec::new(), ServiceSettings::default())
        .await
        .expect("service starts")
}

async fn reserve(s: &LimiterService, lease: LeaseId, reqs: &[(&str, u64)]) -> (bool, String) {
    let requirements = reqs.iter().map(|(k, a)| Requirement::new(*k, *a)).collect();
    let answer = s
        .reserve(&ReserveRequest::new(lease, requirements))
        .await
        .expect("valid reserve");
    (answer.allowed, answer.error)
}

/// One answer a load client saw.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    latency: Duration,
    allowed: bool,
    error: String,
}

async fn blocking(server: &Arc<TbServer>, f: fn(&TbServer)) {
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || f(&server))
        .await
        .expect("server control did not panic");
}

#[actix_rt::test]
async fn killing_tigerbeetle_under_load_fails_fast_and_service_resumes_by_itself() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let server = Arc::new(TbServer::start());
        let config = TigerBeetleSettings {
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            ..tb::config(&server)
        };
        let service = service_on(config, RegistrySource::InMemory).await;
        let key = format!("chaos:{}", LeaseId::new());
        service
            .define(of_kind(&key, LimitKind::Rolling, 1_000_000_000, 60))
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (service, key, seen, stop) =
                    (service.clone(), key.clone(), seen.clone(), stop.clone());
                actix_rt::spawn(async move {
                    for _ in 0..100_000 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let started = Instant::now();
                        let (allowed, error) =
                            reserve(&service, LeaseId::new(), &[(&key, 1)]).await;
                        let latency = started.elapsed();
                        seen.lock().unwrap().push(Seen {
                            at: Instant::now(),
                            latency,
                            allowed,
                            error,
                        });
                        if !allowed {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();

        tokio::time::sleep(Duration::from_secs(1)).await;
        let healthy = seen.lock().unwrap().clone();
        assert!(
            healthy.len() >= CLIENTS,
            "load is running: {}",
            healthy.len()
        );
        assert!(
            healthy.iter().all(|s| s.allowed),
            "all allowed while healthy"
        );
        let (held, answer) = {
            let lease = LeaseId::new();
            (lease, reserve(&service, lease, &[(&key, 1)]).await)
        };
        assert!(answer.0);

        blocking(&server, TbServer::kill).await;
        let killed = Instant::now();
        tokio::time::sleep(Duration::from_secs(12)).await;
        // A complete during the outage (shrinking to 0: a void) fails fast too.
        let started = Instant::now();
        let completed = service
            .complete(&CompleteRequest::new(held, vec![Actual::new(&key, 0)]))
            .await
            .unwrap();
        assert!(!completed.ok);
        assert_eq!(completed.error, "backend_error");
        assert!(started.elapsed() < DOWN_ANSWER_BOUND);

        let down: Vec<Seen> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at > killed + DOWN_ANSWER_BOUND)
            .cloned()
            .collect();
        assert!(
            down.len() >= CLIENTS,
            "clients kept getting answers: {}",
            down.len()
        );
        for s in &down {
            assert!(!s.allowed, "allowed with TigerBeetle down: {s:?}");
            assert_eq!(s.error, "backend_error");
            assert!(
                s.latency < DOWN_ANSWER_BOUND,
                "slow answer while down: {s:?}"
            );
        }
        let slowest = seen.lock().unwrap().iter().map(|s| s.latency).max();
        assert!(
            slowest.unwrap_or_default() < DOWN_ANSWER_BOUND,
            "{slowest:?}"
        );

        blocking(&server, TbServer::restart).await;
        let back = Instant::now();
        let recovered = loop {
            let first = seen
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.at > back && s.allowed)
                .map(|s| s.at);
            if let Some(at) = first {
                break at - back;
            }
            assert!(
                back.elapsed() < Duration::from_secs(5),
                "no allowed answer within 5 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("first allowed answer {recovered:?} after TigerBeetle listened again");
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            tokio::time::timeout(DOWN_ANSWER_BOUND * 2, client)
                .await
                .expect("client stopped in time")
                .expect("client did not panic");
        }
        let after: Vec<Seen> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at > back + Duration::from_secs(5))
            .cloned()
            .collect();
        assert!(
            after.iter().all(|s| s.allowed),
            "all allowed once recovered"
        );
    })
    .await
    .expect("test finished within 120 s");
}

#[actix_rt::test]
async fn a_restarted_service_keeps_uncompleted_reservations_until_they_expire() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        let registry = || RegistrySource::File(Registry::new(&path));
        let config = tb::config(tb::shared());
        let (conc, roll) = (
            format!("restart:{}:conc", LeaseId::new()),
            format!("restart:{}:roll", LeaseId::new()),
        );
        let first = service_on(config.clone(), registry()).await;
        first
            .define(of_kind(&conc, LimitKind::Concurrency, 2, 2))
            .await
            .unwrap();
        first
            .define(of_kind(&roll, LimitKind::Rolling, 3, 2))
            .await
            .unwrap();
        let l1 = LeaseId::new();
        assert!(reserve(&first, l1, &[(&conc, 1), (&roll, 2)]).await.0);
        assert!(
            reserve(&first, LeaseId::new(), &[(&conc, 1), (&roll, 1)])
                .await
                .0
        );
        drop(first);

        let second = service_on(config, registry()).await;
        assert_eq!(
            tb::limit_balance(&conc).await,
            (2, 0, 2),
            "no extra funding"
        );
        assert_eq!(tb::limit_balance(&roll).await, (3, 0, 3));
        assert!(!reserve(&second, LeaseId::new(), &[(&conc, 1)]).await.0);
        assert!(!reserve(&second, LeaseId::new(), &[(&roll, 1)]).await.0);
        // Lease metadata died with the first instance, the ledger still knows the lease:
        // completing it frees its concurrency slot; the other lease still holds until expiry.
        let answer = second
            .complete(&CompleteRequest::new(l1, vec![]))
            .await
            .unwrap();
        assert!(answer.ok);
        assert_eq!(tb::limit_balance(&conc).await, (2, 0, 1));
        let l3 = LeaseId::new();
        assert!(reserve(&second, l3, &[(&conc, 1)]).await.0);
        assert!(!reserve(&second, LeaseId::new(), &[(&conc, 1)]).await.0);
        let answer = second.complete(&CompleteRequest::new(l3, vec![])).await;
        assert!(answer.unwrap().ok);

        tokio::time::sleep(Duration::from_millis(2_000 + EXPIRY_SLACK_MS)).await;
        assert!(
            reserve(&second, LeaseId::new(), &[(&conc, 2), (&roll, 3)])
                .await
                .0
        );
    })
    .await
    .expect("test finished within 60 s");
}

#[actix_rt::test]
async fn connecting_to_a_dead_address_fails_fast_with_a_clear_error() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let config = TigerBeetleSettings {
            addresses: format!("127.0.0.1:{}", tb::free_port()),
            request_timeout_ms: 300,
            ..TigerBeetleSettings::default()
        };
        let started = Instant::now();
        let error =
            TigerBeetleBackend::connect(config, Arc::new(SystemClock), RetryPolicy::default())
                .await
                .expect_err("nothing listens there");
        // The request bound plus the allowance a new client gets to register its session.
        let bound = Duration::from_millis(300) + FIRST_CALL_ALLOWANCE + Duration::from_millis(700);
        assert!(started.elapsed() < bound, "{:?}", started.elapsed());
        match error {
            BackendError::Unavailable(outage) => {
                assert!(matches!(outage, Outage::NotConnected { .. }), "{outage}");
                assert!(
                    outage.to_string().contains("is TigerBeetle running"),
                    "{outage}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    })
    .await
    .expect("test finished within 20 s");
}
