//! The client library end to end against a real `ratelimiterd` HTTP server started in the
//! test on a free loopback port, on the memory backend and (with the `tigerbeetle` feature)
//! on a TigerBeetle server started by the test: the scheduler keeps an open provider flowing
//! while a saturated one waits, the batching client answers in order and idempotently, and
//! the load-test binary reports non-zero throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::limits::{concurrency, rolling};
use futures::future::join_all;
use futures::FutureExt;
use ratelimiter::actors::MemoryBackend;
use ratelimiter::backend::Backend;
use ratelimiter::client::{
    model_limits, rpm_key, BatchConfig, BatchingLimiter, HttpLimiter, JobOutput, JobSpec, Limiter,
    SchedulerConfig, SchedulerError, SchedulerHandle,
};
use ratelimiter::http::{bind, HttpSettings};
use ratelimiter::model::{LeaseId, LimitState, Requirement, ReserveRequest, SystemClock};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};

fn provider_limits(provider: &str, model: &str, rpm: u64) -> Vec<LimitState> {
    model_limits(provider, model, rpm, 1_000_000, 8, 60)
}

/// The backend behind the server under test.
#[derive(Debug, Clone, Copy)]
enum Engine {
    Memory,
    #[cfg(feature = "tigerbeetle")]
    TigerBeetle,
}

async fn backend(engine: Engine, settings: &ServiceSettings) -> Arc<dyn Backend> {
    match engine {
        Engine::Memory => MemoryBackend::start(Arc::new(SystemClock), settings.retry),
        #[cfg(feature = "tigerbeetle")]
        Engine::TigerBeetle => {
            let server = crate::support::tigerbeetle::shared();
            ratelimiter::tigerbeetle::TigerBeetleBackend::connect(
                crate::support::tigerbeetle::config(server),
                Arc::new(SystemClock),
                settings.retry,
            )
            .await
            .expect("the test's TigerBeetle server is reachable")
        }
    }
}

/// Runs each scenario once per backend, each as its own test.
macro_rules! on_every_backend {
    ($($scenario:ident => $memory:ident, $tigerbeetle:ident;)*) => {
        $(
            #[actix_rt::test]
            async fn $memory() {
                $scenario(Engine::Memory).await;
            }

            #[cfg(feature = "tigerbeetle")]
            #[actix_rt::test]
            async fn $tigerbeetle() {
                $scenario(Engine::TigerBeetle).await;
            }
        )*
    };
}

on_every_backend! {
    open_provider_flows => an_open_provider_flows_while_a_saturated_one_waits,
        an_open_provider_flows_while_a_saturated_one_waits_on_tigerbeetle;
    batching_client => the_batching_client_answers_in_order_and_idempotently,
        the_batching_client_answers_in_order_and_idempotently_on_tigerbeetle;
    load_test => the_load_test_reports_throughput_against_a_real_server,
        the_load_test_reports_throughput_against_a_real_tigerbeetle_server;
    exceeds_capacity_over_http => a_requirement_above_capacity_is_refused_at_once_over_http,
        a_requirement_above_capacity_is_refused_at_once_over_http_on_tigerbeetle;
    exceeds_capacity_in_the_scheduler => the_scheduler_fails_an_impossible_job_at_once_naming_the_capacity,
        the_scheduler_fails_an_impossible_job_at_once_naming_the_capacity_on_tigerbeetle;
}

/// A running server; returns its base URL, the service behind it and the server handle.
async fn start_server(
    engine: Engine,
    states: Vec<LimitState>,
) -> (String, Arc<LimiterService>, actix_web::dev::ServerHandle) {
    let settings = ServiceSettings::default();
    let backend = backend(engine, &settings).await;
    let service = LimiterService::start(backend, RegistrySource::InMemory, states, settings)
        .await
        .unwrap();
    let http = HttpSettings {
        workers: 1,
        ..HttpSettings::default()
    };
    let bound = bind(service.clone(), http, "127.0.0.1:0").unwrap();
    let handle = bound.server.handle();
    actix_rt::spawn(bound.server);
    (format!("http://{}", bound.addr), service, handle)
}

async fn open_provider_flows(engine: Engine) {
    bounded(30, async {
        let mut states = provider_limits("openai", "gpt-4o", 1);
        states.extend(provider_limits("anthropic", "claude", 1_000));
        let (url, _service, server) = start_server(engine, states).await;
        let limiter = Arc::new(HttpLimiter::new(&url, Duration::from_secs(2)).unwrap());
        // Use up OpenAI's one request of this minute.
        let saturate = ReserveRequest::new(
            LeaseId::new(),
            vec![Requirement::new(rpm_key("openai", "gpt-4o"), 1)],
        );
        assert!(limiter.reserve(saturate).await.unwrap().allowed);

        let scheduler = SchedulerHandle::start(
            limiter,
            SchedulerConfig {
                workers: 2,
                ..SchedulerConfig::default()
            },
        );
        let openai: Vec<_> = (0..3)
            .map(|i| {
                let scheduler = scheduler.clone();
                actix_rt::spawn(async move {
                    let spec = JobSpec::new("openai", "gpt-4o", 100, 100);
                    scheduler
                        .run(spec, move || {
                            async move {
                                JobOutput {
                                    value: i,
                                    actual_tokens: 50,
                                }
                            }
                            .boxed()
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let anthropic = (0..6).map(|i| {
            scheduler.run(JobSpec::new("anthropic", "claude", 100, 100), move || {
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    JobOutput {
                        value: i,
                        actual_tokens: 50,
                    }
                }
                .boxed()
            })
        });
        let results = join_all(anthropic).await;
        assert_eq!(results, (0..6).map(Ok).collect::<Vec<_>>());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(
            openai.iter().all(|job| !job.is_finished()),
            "OpenAI jobs must still wait"
        );

        let report = scheduler.shutdown(Duration::from_millis(50)).await;
        assert_eq!(report.cancelled.len(), 3);
        assert!(report
            .cancelled
            .iter()
            .all(|(job, _)| job.provider == "openai"));
        for job in openai {
            assert_eq!(job.await.unwrap(), Err(SchedulerError::Cancelled));
        }
        server.stop(false).await;
    })
    .await;
}

async fn exceeds_capacity_over_http(engine: Engine) {
    bounded(30, async {
        let run = LeaseId::new();
        let (tpm, slots) = (format!("e2e:{run}:tpm"), format!("e2e:{run}:slots"));
        let states = vec![
            LimitState::active(rolling(&tpm, 100, 60)),
            LimitState::active(concurrency(&slots, 2, 60)),
        ];
        let (url, service, server) = start_server(engine, states).await;
        let limiter = HttpLimiter::new(&url, Duration::from_secs(2)).unwrap();
        let exceeds = format!("exceeds_capacity:{tpm}");
        let request = |amount: u64| {
            ReserveRequest::new(
                LeaseId::new(),
                vec![
                    Requirement::new(slots.clone(), 1),
                    Requirement::new(tpm.clone(), amount),
                ],
            )
        };
        let in_use = |key: String| {
            let service = service.clone();
            async move { service.get(&key).await.unwrap().unwrap().usage.in_use }
        };

        let answer = limiter.reserve(request(101)).await.unwrap();
        assert!(!answer.allowed);
        assert_eq!(
            (answer.retry_after_ms, answer.error.as_str()),
            (0, exceeds.as_str())
        );
        assert_eq!(
            (in_use(tpm.clone()).await, in_use(slots.clone()).await),
            (0, 0)
        );

        let results = limiter
            .batch_reserve(vec![request(101), request(100), request(1)])
            .await
            .unwrap();
        assert_eq!(
            (results[0].retry_after_ms, results[0].error.as_str()),
            (0, exceeds.as_str())
        );
        assert!(results[1].allowed);
        assert!(!results[2].allowed && results[2].error.is_empty());
        assert!(results[2].retry_after_ms > 0);
        assert_eq!(
            (in_use(tpm.clone()).await, in_use(slots.clone()).await),
            (100, 1)
        );
        server.stop(false).await;
    })
    .await;
}

async fn exceeds_capacity_in_the_scheduler(engine: Engine) {
    bounded(30, async {
        let provider = format!("p{}", LeaseId::new());
        let states = model_limits(&provider, "m", 10, 10_000, 2, 60);
        let (url, _service, server) = start_server(engine, states).await;
        let limiter = Arc::new(HttpLimiter::new(&url, Duration::from_secs(2)).unwrap());
        let scheduler = SchedulerHandle::start(limiter, SchedulerConfig::default());
        let started = Instant::now();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let result = scheduler
            .run(JobSpec::new(&provider, "m", 19_000, 1_000), move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                async move {
                    JobOutput {
                        value: (),
                        actual_tokens: 1,
                    }
                }
                .boxed()
            })
            .await;
        let tpm = ratelimiter::client::tpm_key(&provider, "m");
        let error = result.unwrap_err();
        assert_eq!(
            error,
            SchedulerError::ExceedsCapacity {
                key: tpm.clone(),
                amount: 20_000,
                unit: "tokens".into(),
                capacity: Some(10_000),
            }
        );
        assert_eq!(
            error.to_string(),
            format!("a request of 20000 tokens exceeds {tpm} (capacity 10000)")
        );
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "never executed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "failed at once, no retry"
        );
        // A job that fits still runs.
        let fits = scheduler
            .run(JobSpec::new(&provider, "m", 100, 100), || {
                async {
                    JobOutput {
                        value: 7,
                        actual_tokens: 1,
                    }
                }
                .boxed()
            })
            .await;
        assert_eq!(fits, Ok(7));
        server.stop(false).await;
    })
    .await;
}

async fn batching_client(engine: Engine) {
    bounded(30, async {
        let key = "e2e:batch".to_string();
        let (url, service, server) =
            start_server(engine, vec![LimitState::active(rolling(&key, 3, 60))]).await;
        let http = Arc::new(HttpLimiter::new(&url, Duration::from_secs(2)).unwrap());
        let batcher = BatchingLimiter::start(
            http,
            BatchConfig {
                size: 4,
                flush_ms: 5,
            },
        )
        .unwrap();
        let requests: Vec<ReserveRequest> = (0..6)
            .map(|_| ReserveRequest::new(LeaseId::new(), vec![Requirement::new(key.clone(), 1)]))
            .collect();
        let first = join_all(requests.iter().cloned().map(|r| batcher.reserve(r))).await;
        let allowed: Vec<bool> = first.into_iter().map(|a| a.unwrap().allowed).collect();
        assert_eq!(allowed, [true, true, true, false, false, false]);
        let stats = batcher.stats();
        assert_eq!((stats.reserve_batches, stats.reserve_items), (2, 6));

        // The same lease ids again: the allowed stay allowed without taking more, the denied
        // stay denied.
        let again = join_all(requests.iter().cloned().map(|r| batcher.reserve(r))).await;
        let allowed_again: Vec<bool> = again.into_iter().map(|a| a.unwrap().allowed).collect();
        assert_eq!(allowed_again, allowed);
        let usage = service.get(&key).await.unwrap().unwrap().usage;
        assert_eq!(usage.in_use, 3);
        server.stop(false).await;
    })
    .await;
}

async fn run_loadtest(url: &str, extra: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ratelimiter-loadtest"))
        .args([
            "--mode",
            "http",
            "--url",
            url,
            "--duration",
            "2s",
            "--concurrency",
            "4",
            "--providers",
            "2",
        ])
        .args(extra)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("[  1.0s] reserves"),
        "no progress line:\n{stderr}"
    );
    stdout
}

/// The number before `/s)` on the line starting with `prefix`.
fn rate(report: &str, prefix: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{report}"));
    let open = line.find('(').unwrap();
    let close = line.find("/s)").unwrap();
    line[open + 1..close].parse().unwrap()
}

async fn load_test(engine: Engine) {
    bounded(40, async {
        let (url, _service, server) = start_server(engine, Vec::new()).await;
        let plain = run_loadtest(&url, &[]).await;
        assert!(rate(&plain, "reserves:") > 0.0, "{plain}");
        assert!(rate(&plain, "completes:") > 0.0, "{plain}");
        assert!(plain.contains("errors 0"), "{plain}");
        assert!(plain.contains("reserve latency ms: p50"), "{plain}");

        let batched = run_loadtest(&url, &["--batch", "8"]).await;
        assert!(rate(&batched, "reserves:") > 0.0, "{batched}");
        assert!(batched.contains("client batches: reserve"), "{batched}");
        server.stop(false).await;
    })
    .await;
}
