//! Cogni through the client library: every provider request — each step of the tool loop
//! and each retry — is reserved (rpm 1, tpm = request bytes + max_tokens, concurrency 1)
//! and completed with the provider's usage; limiter set-up errors name the field.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::bound::bounded;
use crate::support::cogni::{repo, run_every_task, sim, write};
use async_trait::async_trait;
use ratelimiter::client::model_limits;
use ratelimiter::client::{BatchConfig, BatchingLimiter, Limiter, LimiterError, LocalLimiter};
use ratelimiter::model::{
    CompleteRequest, CompleteResponse, LimitState, ReserveRequest, ReserveResponse, SystemClock,
};
use ratelimiter::runner::config::{LimiterMode, LoadedConfig};
use ratelimiter::runner::eval::{TaskStatus, Verdict};
use ratelimiter::runner::limiter_setup::RunLimiter;
use ratelimiter::runner::run::{run_tasks_with, select_tasks, RunError, RunOptions};
use ratelimiter::runner::sim::SimLimits;

const TPM: &str = "global:llm:sim:sim-1:tpm";

/// Forwards to a limiter and records every reserve and complete item.
struct CountingLimiter {
    inner: Arc<dyn Limiter>,
    reserves: AtomicU64,
    allowed: AtomicU64,
    completes: AtomicU64,
    tpm_reserved: Mutex<Vec<u64>>,
    tpm_actual: Mutex<Vec<u64>>,
}

impl CountingLimiter {
    fn new(inner: Arc<dyn Limiter>) -> Arc<CountingLimiter> {
        Arc::new(CountingLimiter {
            inner,
            reserves: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            completes: AtomicU64::new(0),
            tpm_reserved: Mutex::default(),
            tpm_actual: Mutex::default(),
        })
    }

    fn saw_reserve(&self, request: &ReserveRequest, response: &ReserveResponse) {
        self.reserves.fetch_add(1, Ordering::SeqCst);
        if response.allowed {
            self.allowed.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<_> = request
                .requirements
                .iter()
                .map(|r| (r.key.as_ref(), r.amount))
                .collect();
            assert_eq!(keys[0], ("global:llm:sim:sim-1:rpm", 1));
            assert_eq!(keys[2], ("global:llm:sim:sim-1:concurrency", 1));
            assert_eq!(keys[1].0, TPM);
            self.tpm_reserved.lock().unwrap().push(keys[1].1);
        }
    }

    fn saw_complete(&self, request: &CompleteRequest) {
        self.completes.fetch_add(1, Ordering::SeqCst);
        let tpm = request
            .actuals
            .iter()
            .find(|a| a.key == TPM)
            .expect("tpm actual");
        self.tpm_actual.lock().unwrap().push(tpm.actual_amount);
    }
}

#[async_trait]
impl Limiter for CountingLimiter {
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        let response = self.inner.reserve(request.clone()).await?;
        self.saw_reserve(&request, &response);
        Ok(response)
    }

    async fn complete(&self, request: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        self.saw_complete(&request);
        self.inner.complete(request).await
    }

    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        let responses = self.inner.batch_reserve(requests.clone()).await?;
        for (request, response) in requests.iter().zip(&responses) {
            self.saw_reserve(request, response);
        }
        Ok(responses)
    }

    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        for request in &requests {
            self.saw_complete(request);
        }
        self.inner.batch_complete(requests).await
    }
}

fn limits(concurrency: u64) -> Vec<LimitState> {
    model_limits("sim", "sim-1", 1_000, 10_000_000, concurrency, 60)
}

fn project(dir: &Path, base_url: &str, rate_limiter: &str, questions: usize) -> LoadedConfig {
    let mut text = String::from("questions:\n");
    for i in 0..questions {
        text.push_str(&format!("  - {{ id: q{i}, question: 'Question {i}?', answers: [yes, no], correct_answers: [yes] }}\n"));
    }
    write(dir, "questions.yml", &text);
    let config = format!(
        "agents: [ {{ id: default, provider: sim, model: sim-1, base_url: '{base_url}' }} ]\n\
         tasks: [ {{ id: t, questions_file: questions.yml, concurrency: 3 }} ]\n\
         rate_limiter: {rate_limiter}\n"
    );
    let path = write(dir, ".cogni/config.yml", &config);
    LoadedConfig::load(&path).unwrap()
}

const THREE_STEPS: &str = "rules:\n  - { match: 'Question 4?', fail_first: [429], retry_after_ms: 10, tool_calls: [ {name: list_dir}, {name: read_file, arguments: {path: Cargo.toml}} ], answer: yes }\ndefault:\n  tool_calls: [ {name: list_dir}, {name: read_file, arguments: {path: Cargo.toml}} ]\n  answer: yes\n";

#[actix_rt::test]
async fn every_provider_request_is_reserved_and_completed() {
    bounded(20, async {
        let dir = repo();
        let server = sim(THREE_STEPS, 20, SimLimits::default());
        let loaded = project(
            dir.path(),
            &server.base_url(),
            "{ mode: embedded, limits: [], max_output_tokens: 256 }",
            6,
        );
        let local = LocalLimiter::from_states(limits(2), Arc::new(SystemClock))
            .await
            .unwrap();
        let counting = CountingLimiter::new(Arc::new(local));
        let batcher = BatchingLimiter::start(
            counting.clone(),
            BatchConfig {
                size: 16,
                flush_ms: 2,
            },
        )
        .unwrap();
        let limiter = RunLimiter::new(LimiterMode::Embedded, Arc::new(batcher));
        let tasks = select_tasks(&loaded, &[]).unwrap();
        let report = run_tasks_with(&loaded, tasks, limiter, &RunOptions::default())
            .await
            .unwrap();

        let task = &report.tasks[0];
        assert!(
            task.questions
                .iter()
                .all(|q| q.verdict == Verdict::Correct && q.steps == 3),
            "{task:?}"
        );
        let stats = server.stats();
        // 6 questions × 3 steps, plus the one scripted 429 that was retried.
        assert_eq!(stats.requests, 19);
        assert_eq!(task.provider_requests, 19);
        assert_eq!(
            counting.allowed.load(Ordering::SeqCst),
            stats.requests,
            "one allowed reserve per provider request"
        );
        assert_eq!(
            counting.completes.load(Ordering::SeqCst),
            stats.requests,
            "one complete per allowed reserve"
        );
        assert!(counting.reserves.load(Ordering::SeqCst) >= stats.requests);
        assert!(stats.max_in_flight <= 2, "{stats:?}");
        assert_eq!(stats.status_429, 1, "{stats:?}");

        let reserved = counting.tpm_reserved.lock().unwrap().clone();
        assert!(
            reserved.iter().all(|upper| *upper > 256),
            "tpm = request bytes + max_tokens: {reserved:?}"
        );
        let actual = counting.tpm_actual.lock().unwrap().clone();
        let reported: u64 = task.tokens.total();
        assert_eq!(reported, stats.prompt_tokens + stats.completion_tokens);
        // Answered requests complete with the usage the provider reported; the 429 carried no
        // usage and completes with its reserved upper bound (when in doubt, over-count).
        let unreported = actual.iter().sum::<u64>() - reported;
        assert!(
            reserved.contains(&unreported),
            "{unreported} not among {reserved:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn limiter_set_up_errors_name_the_field() {
    bounded(10, async {
        let dir = repo();
        let loaded = project(
            dir.path(),
            "http://127.0.0.1:9/v1",
            "{ mode: embedded, limits_path: limits/none.json }",
            1,
        );
        let err = run_every_task(&loaded).await.unwrap_err();
        assert!(matches!(err, RunError::Limiter(_)));
        assert_eq!(err.exit_code(), 2);
        let message = err.to_string();
        assert!(
            message.contains(".cogni/config.yml: rate_limiter.limits_path: ")
                && message.contains("none.json"),
            "{message}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn an_unreachable_remote_limiter_is_a_runtime_error() {
    bounded(20, async {
        let dir = repo();
        let server = sim("{}", 0, SimLimits::default());
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let rate_limiter =
            format!("{{ mode: remote, base_url: 'http://{closed}', request_timeout_ms: 200 }}");
        let loaded = project(dir.path(), &server.base_url(), &rate_limiter, 1);
        let report = run_every_task(&loaded).await.unwrap();
        let task = &report.tasks[0];
        assert_eq!(task.status, TaskStatus::Error);
        let error = task.questions[0].error.clone().unwrap();
        assert!(
            error.starts_with("rate limiter: limiter unreachable"),
            "{error}"
        );
        assert_eq!(
            server.stats().requests,
            0,
            "nothing reaches the provider without a reservation"
        );
    })
    .await;
}

#[actix_rt::test]
async fn a_question_asking_more_than_a_capacity_fails_at_once_naming_it() {
    bounded(20, async {
        let dir = repo();
        let server = sim("{}", 0, SimLimits::default());
        // 1 000 tokens per minute, while every request reserves its bytes + 2 048.
        let states = model_limits("sim", "sim-1", 1_000, 1_000, 2, 60);
        let rate_limiter = format!(
            "{{ mode: embedded, limits: {}, max_output_tokens: 2048 }}",
            serde_json::to_string(&states).unwrap()
        );
        let loaded = project(dir.path(), &server.base_url(), &rate_limiter, 2);
        let started = std::time::Instant::now();
        let report = run_every_task(&loaded).await.unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "no retry loop"
        );
        let task = &report.tasks[0];
        assert_eq!(task.status, TaskStatus::Error);
        for question in &task.questions {
            let error = question.error.clone().unwrap();
            assert!(
                error.starts_with("rate limiter: a request of ")
                    && error.ends_with(" tokens exceeds global:llm:sim:sim-1:tpm (capacity 1000)"),
                "{error}"
            );
        }
        assert_eq!(server.stats().requests, 0, "nothing reached the provider");
    })
    .await;
}
