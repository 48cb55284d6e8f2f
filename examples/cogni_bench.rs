//! Cogni benchmark (BENCHMARKS.md): questions answered by 2-step agents (one tool call, then
//! the answer) against llm-sim enforcing an exact sliding window by arrival — 40 requests per
//! 10 s, 4 in flight, 1M tokens per window — with the same limits in the limiter, in embedded
//! and remote mode. Prints the wall time next to the lower bound the limits imply, and the
//! simulator's 429 count (target: zero).
//!
//! `cargo run --release --example cogni_bench -- [QUESTIONS] [LATENCY_MS] [WORKERS,...] [MARGIN_MS]`
//! (defaults 30, 100, 8, the default window margin). `WORKERS` may list several counts
//! (`8,16,32`); `MARGIN_MS` sets the limiter's window margin (`retry.window_margin_ms`) in
//! remote mode, where the time from reservation to the provider's arrival is longest
//! (embedded mode always uses the default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratelimiter::actors::MemoryBackend;
use ratelimiter::client::model_limits;
use ratelimiter::http::{self, HttpSettings};
use ratelimiter::model::{LimitKind, LimitState, RetryPolicy, SystemClock};
use ratelimiter::runner::config::LoadedConfig;
use ratelimiter::runner::results::RunReport;
use ratelimiter::runner::run::{run_tasks, select_tasks, RunOptions};
use ratelimiter::runner::sim::{Script, SimConfig, SimLimits, SimServer, SimStats};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};

/// Requests per window (the provider's and the limiter's).
const RPM: u64 = 40;
/// Tokens per window: high enough never to bind.
const TPM: u64 = 1_000_000;
/// Requests in flight.
const CONCURRENCY: u64 = 4;
/// The sliding window of RPM and TPM.
const WINDOW_SECONDS: u64 = 10;
const STEPS_PER_QUESTION: u64 = 2;
const SCRIPT: &str =
    "default:\n  tool_calls:\n    - { name: list_dir, arguments: { path: . } }\n  answer: $first\n";

/// The model's limits, with rolling keys over [`WINDOW_SECONDS`].
fn limits() -> Vec<LimitState> {
    let mut states = model_limits("sim", "sim-1", RPM, TPM, CONCURRENCY, 60);
    for state in &mut states {
        if state.definition.kind == LimitKind::Rolling {
            state.definition.window_seconds = WINDOW_SECONDS;
        }
    }
    states
}

fn arg(index: usize, default: u64) -> u64 {
    std::env::args()
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of counts, e.g. `8,16,32`.
fn list_arg(index: usize, default: u64) -> Vec<u64> {
    let parsed: Vec<u64> = std::env::args()
        .nth(index)
        .map(|a| a.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default();
    if parsed.is_empty() {
        vec![default]
    } else {
        parsed
    }
}

/// A repository with `n` questions whose first choice is correct.
fn repository(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("README.md"),
        "# bench\nA small repository.\n",
    )
    .expect("README");
    let mut text = String::from("version: 1\nquestions:\n");
    for i in 0..n {
        text.push_str(&format!("  - {{ id: q{i}, question: 'Question {i}?', answers: [yes, no], correct_answers: [yes] }}\n"));
    }
    std::fs::write(dir.path().join("questions.yml"), text).expect("questions");
    dir
}

async fn run_mode(
    mode: &str,
    questions: u64,
    latency_ms: u64,
    workers: u64,
    policy: RetryPolicy,
) -> (RunReport, SimStats, Duration) {
    let sim = SimServer::start(SimConfig {
        latency: Duration::from_millis(latency_ms),
        limits: SimLimits {
            rpm: Some(RPM),
            tpm: Some(TPM),
            concurrency: Some(CONCURRENCY),
            window: Duration::from_secs(WINDOW_SECONDS),
        },
        script: Script::parse(SCRIPT).expect("script"),
        ..SimConfig::default()
    })
    .expect("llm-sim starts");
    let dir = repository(questions);
    let mut _server = None;
    let rate_limiter = match mode {
        "embedded" => format!(
            "{{ mode: embedded, limits: {} }}",
            serde_json::to_string(&limits()).expect("JSON")
        ),
        _ => {
            let backend = MemoryBackend::start(Arc::new(SystemClock), policy);
            let service = LimiterService::start(
                backend,
                RegistrySource::InMemory,
                limits(),
                ServiceSettings {
                    retry: policy,
                    ..ServiceSettings::default()
                },
            )
            .await
            .expect("service starts");
            let bound = http::bind(
                service,
                HttpSettings {
                    workers: 1,
                    ..HttpSettings::default()
                },
                "127.0.0.1:0",
            )
            .expect("bind");
            let url = format!("http://{}", bound.addr);
            let handle = bound.server.handle();
            actix_rt::spawn(bound.server);
            _server = Some(handle);
            format!("{{ mode: remote, base_url: '{url}' }}")
        }
    };
    let config = format!(
        "agents:\n  - {{ id: default, provider: sim, model: sim-1, base_url: '{}' }}\n\
         tasks:\n  - {{ id: bench, questions_file: questions.yml, concurrency: {workers} }}\n\
         rate_limiter: {rate_limiter}\n",
        sim.base_url()
    );
    let path = dir.path().join(".cogni/config.yml");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("config dir");
    std::fs::write(&path, config).expect("config");
    let loaded = LoadedConfig::load(&path).expect("valid config");
    let tasks = select_tasks(&loaded, &[]).expect("task");
    let options = RunOptions {
        print_summary: false,
        ..RunOptions::default()
    };
    let started = Instant::now();
    let report = run_tasks(&loaded, tasks, &options)
        .await
        .expect("run completes");
    let elapsed = started.elapsed();
    if let Some(handle) = _server {
        handle.stop(false).await;
    }
    (report, sim.stats(), elapsed)
}

/// The shortest time the limits allow, for any scheduler:
/// - concurrency: `requests × latency / slots`, and each worker's questions run their steps
///   one after another;
/// - the sliding window: with `slots` in flight the `k`-th arrival (0-based) is no earlier
///   than `⌊k / slots⌋ × latency`, and arrival `k + m·RPM` is more than `m` windows after
///   arrival `k`; so the last request arrives no earlier than
///   `⌊k₀ / slots⌋ × latency + m × window` with `m = ⌊(n-1)/RPM⌋`, `k₀ = n-1 - m·RPM`, and
///   ends one latency later. The simpler `m × window + latency` is printed too.
fn lower_bounds(
    requests: u64,
    latency_ms: u64,
    questions: u64,
    workers: u64,
) -> (Duration, Duration) {
    let slots = CONCURRENCY.min(workers).max(1);
    let by_concurrency = requests.div_ceil(slots) * latency_ms;
    let by_chain = STEPS_PER_QUESTION * latency_ms * questions.div_ceil(workers.max(1));
    let last = requests.saturating_sub(1);
    let windows = last / RPM;
    let window_ms = WINDOW_SECONDS * 1000;
    let simple = windows * window_ms + latency_ms;
    let by_window = (last - windows * RPM) / slots * latency_ms + windows * window_ms + latency_ms;
    let common = by_concurrency.max(by_chain);
    (
        Duration::from_millis(common.max(by_window)),
        Duration::from_millis(common.max(simple)),
    )
}

fn main() {
    let questions = arg(1, 30);
    let latency_ms = arg(2, 100);
    let worker_counts = list_arg(3, 8);
    let mut policy = RetryPolicy::default();
    policy.window_margin_ms = arg(4, policy.window_margin_ms);
    println!("cogni_bench: {questions} questions, {STEPS_PER_QUESTION}-step agents, provider latency {latency_ms} ms");
    println!(
        "limits (simulator: exact sliding window by arrival; limiter: the same): {RPM} requests \
         and {TPM} tokens per {WINDOW_SECONDS} s, concurrency {CONCURRENCY}; limiter window \
         margin {} ms (remote)",
        policy.window_margin_ms
    );
    println!(
        "| workers | mode | wall time | lower bound | ratio | simple bound | ratio | provider requests | 429s | correct |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for workers in worker_counts {
        for mode in ["embedded", "remote"] {
            let (report, stats, elapsed) = actix_rt::System::new()
                .block_on(run_mode(mode, questions, latency_ms, workers, policy));
            let task = &report.tasks[0];
            let (bound, simple) = lower_bounds(stats.requests, latency_ms, questions, workers);
            let ratio = |b: Duration| elapsed.as_secs_f64() / b.as_secs_f64().max(1e-9);
            println!(
                "| {workers} | {mode} | {:.2} s | {:.2} s | {:.3} | {:.2} s | {:.3} | {} | {} | {}/{} |",
                elapsed.as_secs_f64(),
                bound.as_secs_f64(),
                ratio(bound),
                simple.as_secs_f64(),
                ratio(simple),
                stats.requests,
                stats.status_429,
                task.counts.correct,
                task.counts.total
            );
        }
    }
}
