//! Cogni benchmark (BENCHMARKS.md): 100 questions answered by 3-step agents (two tool calls,
//! then the answer) against llm-sim with provider limits RPM 600 / TPM 200k / concurrency 8,
//! and the same limits in the limiter, in embedded and remote mode. Prints the wall time next
//! to the lower bound the limits imply, and the simulator's 429 count (target: zero).
//!
//! `cargo run --example cogni_bench -- [QUESTIONS] [LATENCY_MS] [WORKERS]`
//! (defaults 100, 100, 8).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratelimiter::actors::MemoryBackend;
use ratelimiter::client::model_limits;
use ratelimiter::http::{self, HttpSettings};
use ratelimiter::model::{LimitState, RetryPolicy, SystemClock};
use ratelimiter::runner::config::LoadedConfig;
use ratelimiter::runner::results::RunReport;
use ratelimiter::runner::run::{run_tasks, select_tasks, RunOptions};
use ratelimiter::runner::sim::{Script, SimConfig, SimLimits, SimServer, SimStats};
use ratelimiter::service::{LimiterService, RegistrySource, ServiceSettings};

const RPM: u64 = 600;
const TPM: u64 = 200_000;
const CONCURRENCY: u64 = 8;
const STEPS_PER_QUESTION: u64 = 3;
const SCRIPT: &str = "default:\n  tool_calls:\n    - { name: list_dir, arguments: { path: . } }\n    - { name: read_file, arguments: { path: README.md } }\n  answer: $first\n";

fn limits() -> Vec<LimitState> {
    model_limits("sim", "sim-1", RPM, TPM, CONCURRENCY, 60)
}

fn arg(index: usize, default: u64) -> u64 {
    std::env::args()
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
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
) -> (RunReport, SimStats, Duration) {
    let sim = SimServer::start(SimConfig {
        latency: Duration::from_millis(latency_ms),
        limits: SimLimits {
            rpm: Some(RPM),
            tpm: Some(TPM),
            concurrency: Some(CONCURRENCY),
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
            let backend = MemoryBackend::start(Arc::new(SystemClock), RetryPolicy::default());
            let service = LimiterService::start(
                backend,
                RegistrySource::InMemory,
                limits(),
                ServiceSettings::default(),
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

/// The shortest time the limits allow: concurrency (requests × latency / cap, and each
/// question's steps run one after another), RPM and TPM (a 60 s window per capacity).
fn lower_bound(
    requests: u64,
    tokens: u64,
    latency_ms: u64,
    questions: u64,
    workers: u64,
) -> Duration {
    let slots = CONCURRENCY.min(workers).max(1);
    let by_concurrency = requests.div_ceil(slots) * latency_ms;
    // With one question per worker, each worker's questions run their steps one after another.
    let by_chain = STEPS_PER_QUESTION * latency_ms * questions.div_ceil(workers.max(1));
    let by_rpm = requests.saturating_sub(1) / RPM * 60_000;
    let by_tpm = tokens.saturating_sub(1) / TPM * 60_000;
    Duration::from_millis(by_concurrency.max(by_chain).max(by_rpm).max(by_tpm))
}

fn main() {
    let questions = arg(1, 100);
    let latency_ms = arg(2, 100);
    let workers = arg(3, CONCURRENCY);
    println!("cogni_bench: {questions} questions, {STEPS_PER_QUESTION}-step agents, provider latency {latency_ms} ms, {workers} workers");
    println!("limits (simulator and limiter): RPM {RPM}, TPM {TPM}, concurrency {CONCURRENCY}");
    println!(
        "| mode | wall time | lower bound | ratio | provider requests | tokens | 429s | correct |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for mode in ["embedded", "remote"] {
        let (report, stats, elapsed) =
            actix_rt::System::new().block_on(run_mode(mode, questions, latency_ms, workers));
        let task = &report.tasks[0];
        let bound = lower_bound(
            stats.requests,
            task.tokens.total(),
            latency_ms,
            questions,
            workers,
        );
        println!(
            "| {mode} | {:.2} s | {:.2} s | {:.2} | {} | {} | {} | {}/{} |",
            elapsed.as_secs_f64(),
            bound.as_secs_f64(),
            elapsed.as_secs_f64() / bound.as_secs_f64().max(1e-9),
            stats.requests,
            task.tokens.total(),
            stats.status_429,
            task.counts.correct,
            task.counts.total
        );
    }
}
