//! Outage behaviour over HTTP: TigerBeetle is killed and restarted under concurrent load
//! against a running `ratelimiterd` API, once per `backend_down` policy.
//!
//! Checked: once the backend is known to be down, answers come in milliseconds (p99 under
//! a generous test bound; the measured figure is in BENCHMARKS.md), `/readyz` answers 503
//! naming the backend, no request hangs, the service recovers by itself soon after the
//! cluster listens again, and the ledger audit balances: every accounted allowed answer
//! holds a pending transfer, nothing else does except requests whose outcome was unknown,
//! and no more than the capacity is ever held.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::tigerbeetle::{self as tb, TbServer};
use ratelimiter::client::{HttpLimiter, Limiter};
use ratelimiter::http::{bind, HttpSettings};
use ratelimiter::model::{
    LeaseId, LimitDefinition, Requirement, ReserveRequest, RetryPolicy, SystemClock,
};
use ratelimiter::outage::{BackendDownPolicy, OutageSettings, OutageStats};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};
use ratelimiter::tigerbeetle::{TigerBeetleBackend, TigerBeetleSettings};

const CLIENTS: usize = 16;
const REQUEST_TIMEOUT_MS: u64 = 500;
const CAPACITY: u64 = 1_000_000_000;
/// Test bound on the p99 of answers once the backend is known to be down (target: 5 ms).
const DOWN_P99_BOUND: Duration = Duration::from_millis(50);
/// No answer may take longer: the batch in flight when the cluster died, then its own.
const NO_HANG_BOUND: Duration = Duration::from_millis(2 * REQUEST_TIMEOUT_MS + 1_000);
/// Test bound on recovery after the cluster listens again (target: 1 s; the measured
/// figures are in BENCHMARKS.md).
const RECOVERY_BOUND: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Allowed,
    Denied,
    BackendError,
    Failed(String),
}

#[derive(Debug, Clone)]
struct Seen {
    started: Instant,
    latency: Duration,
    outcome: Outcome,
}

/// What one kill-and-restart run measured.
#[derive(Debug)]
struct Run {
    seen: Vec<Seen>,
    down_at: Instant,
    back_at: Instant,
    recovered_after: Duration,
    stats: OutageStats,
    in_use: u64,
    available: u64,
}

impl Run {
    fn count(&self, outcome: &Outcome) -> u64 {
        self.seen.iter().filter(|s| &s.outcome == outcome).count() as u64
    }

    /// Latencies of the requests sent while the backend was known to be down.
    fn down_latencies(&self) -> Vec<Duration> {
        let mut down: Vec<Duration> = self
            .seen
            .iter()
            .filter(|s| s.started >= self.down_at && s.started + s.latency <= self.back_at)
            .map(|s| s.latency)
            .collect();
        down.sort();
        down
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn blocking(server: &Arc<TbServer>, f: fn(&TbServer)) {
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || f(&server))
        .await
        .expect("server control did not panic");
}

/// Waits (bounded) until `ready` says what the test needs.
async fn until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

async fn readyz(base: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("GET /readyz");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

async fn kill_and_restart(server: &Arc<TbServer>, policy: BackendDownPolicy) -> Run {
    let config = TigerBeetleSettings {
        request_timeout_ms: REQUEST_TIMEOUT_MS,
        ..tb::config(server)
    };
    let backend =
        TigerBeetleBackend::connect(config, Arc::new(SystemClock), RetryPolicy::default())
            .await
            .expect("TigerBeetle backend connects");
    let settings = ServiceSettings {
        outage: OutageSettings {
            policy,
            ..OutageSettings::default()
        },
        ..ServiceSettings::default()
    };
    let service = LimiterService::start(backend, RegistrySource::InMemory, Vec::new(), settings)
        .await
        .expect("service starts");
    let key = format!("outage:{}", LeaseId::new());
    service
        .define(LimitDefinition::rolling(&key, CAPACITY, 60))
        .await
        .expect("key defined");
    let http = HttpSettings {
        workers: 2,
        ..HttpSettings::default()
    };
    let bound = bind(service.clone(), http, "127.0.0.1:0").expect("bind the API");
    let base = format!("http://{}", bound.addr);
    let handle = bound.server.handle();
    actix_rt::spawn(bound.server);
    assert_eq!(
        readyz(&base).await,
        (200, serde_json::json!({"ready": true}))
    );

    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (seen, stop, key) = (seen.clone(), stop.clone(), key.clone());
            let limiter = HttpLimiter::new(&base, Duration::from_secs(10)).expect("client");
            actix_rt::spawn(async move {
                for _ in 0..200_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let request =
                        ReserveRequest::new(LeaseId::new(), vec![Requirement::new(&key, 1)]);
                    let started = Instant::now();
                    let answer = limiter.reserve(request).await;
                    let latency = started.elapsed();
                    let outcome = match answer {
                        Ok(r) if r.allowed => Outcome::Allowed,
                        Ok(r) if r.error == "backend_error" => Outcome::BackendError,
                        Ok(r) if r.error.is_empty() => Outcome::Denied,
                        Ok(r) => Outcome::Failed(r.error),
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                    let pause = outcome != Outcome::Allowed;
                    seen.lock().unwrap().push(Seen {
                        started,
                        latency,
                        outcome,
                    });
                    if pause {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(seen.lock().unwrap().len() >= CLIENTS, "load is running");

    blocking(server, TbServer::kill).await;
    until(
        "the service marks the backend down",
        NO_HANG_BOUND * 2,
        || service.readiness().is_err(),
    )
    .await;
    let down_at = Instant::now();
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "not_ready");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("backend tigerbeetle is down since"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    blocking(server, TbServer::restart).await;
    let back_at = Instant::now();
    let recovered_after = until("the service recovers", RECOVERY_BOUND, || {
        service.readiness().is_ok()
    })
    .await;
    assert_eq!(readyz(&base).await.0, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        tokio::time::timeout(NO_HANG_BOUND * 2, client)
            .await
            .expect("client stopped in time")
            .expect("client did not panic");
    }
    let usage = service
        .get(&key)
        .await
        .expect("usage readable once recovered")
        .expect("key defined")
        .usage;
    handle.stop(true).await;
    let run = Run {
        seen: seen.lock().unwrap().clone(),
        down_at,
        back_at,
        recovered_after,
        stats: service.outage_stats(),
        in_use: usage.in_use,
        available: usage.available,
    };
    check(&run, policy);
    run
}

/// Every assertion common to both policies, plus the policy's own answers while down.
fn check(run: &Run, policy: BackendDownPolicy) {
    let failed: Vec<&Seen> = run
        .seen
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "unexpected answers: {:?}",
        &failed[..failed.len().min(5)]
    );
    let slowest = run.seen.iter().map(|s| s.latency).max().unwrap_or_default();
    assert!(slowest < NO_HANG_BOUND, "an answer took {slowest:?}");
    let down = run.down_latencies();
    assert!(down.len() >= 200, "only {} answers while down", down.len());
    let p99 = percentile(&down, 0.99);
    assert!(p99 < DOWN_P99_BOUND, "p99 while down {p99:?}");
    let expected = match policy {
        BackendDownPolicy::Deny => Outcome::BackendError,
        BackendDownPolicy::Allow => Outcome::Allowed,
    };
    assert!(
        run.seen
            .iter()
            .filter(|s| s.started >= run.down_at && s.started + s.latency <= run.back_at)
            .all(|s| s.outcome == expected),
        "every answer while down is {expected:?}"
    );
    assert!(
        run.seen
            .iter()
            .filter(|s| s.started >= run.back_at + run.recovered_after)
            .all(|s| s.outcome == Outcome::Allowed),
        "allowed again once recovered"
    );
    // Ledger audit.
    let allowed = run.count(&Outcome::Allowed);
    let unaccounted = run.stats.reserves_allowed_unaccounted;
    let accounted = allowed - unaccounted;
    let unknown = run.count(&Outcome::BackendError) - run.stats.reserves_refused;
    assert_eq!(
        run.in_use + run.available,
        CAPACITY,
        "the limit account balances"
    );
    assert!(
        accounted <= run.in_use,
        "{accounted} accounted allowed answers but only {} held",
        run.in_use
    );
    assert!(
        run.in_use <= accounted + unknown,
        "{} held but only {accounted} allowed and {unknown} unknown outcomes",
        run.in_use
    );
    match policy {
        BackendDownPolicy::Deny => assert_eq!(unaccounted, 0),
        BackendDownPolicy::Allow => {
            assert_eq!(run.stats.reserves_refused, 0);
            assert!(unaccounted as usize >= down.len());
        }
    }
    assert_eq!(run.stats.outages, 1, "one outage: {:?}", run.stats);
    eprintln!(
        "backend_down={}: {} answers; while down n={} p50={:?} p99={:?} max={:?}; \
         recovered {:?} after the cluster listened; slowest answer {slowest:?}; \
         held {} = {accounted} accounted + {} of {unknown} unknown; stats {:?}",
        policy.as_str(),
        run.seen.len(),
        down.len(),
        percentile(&down, 0.5),
        p99,
        down.last().copied().unwrap_or_default(),
        run.recovered_after,
        run.in_use,
        run.in_use - accounted,
        run.stats
    );
}

#[actix_rt::test]
async fn killing_tigerbeetle_under_http_load_fails_fast_and_recovers_for_both_policies() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let server = Arc::new(TbServer::start());
        for policy in [BackendDownPolicy::Deny, BackendDownPolicy::Allow] {
            kill_and_restart(&server, policy).await;
        }
    })
    .await
    .expect("test finished within 150 s");
}
