//! The agent loop against the provider simulator: tool calls then an answer, parse errors,
//! budgets (steps, tokens, seconds), 429 and 5xx retries, and the call hooks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::cogni::{agent, pipeline, question, repo, settings, sim};
use ratelimiter::runner::agent::{Agent, AgentSettings};
use ratelimiter::runner::config::BudgetConfig;
use ratelimiter::runner::eval::Verdict;
use ratelimiter::runner::gate::{CallSpec, DirectGate};
use ratelimiter::runner::output::Output;
use ratelimiter::runner::pipeline::{CallContext, CallEvent, CallHook};
use ratelimiter::runner::provider::ChatRequest;
use ratelimiter::runner::sim::SimLimits;
use ratelimiter::runner::tools::{RepoTools, ToolLimits};

const TOOLS_THEN_ANSWER: &str = r#"
rules:
  - match: "language"
    tool_calls:
      - { name: list_dir, arguments: { path: "." } }
      - { name: read_file, arguments: { path: "src/main.rs" } }
      - { name: read_file, arguments: { path: "../outside.txt" } }
    answer: Rust
"#;

#[actix_rt::test]
async fn tool_calls_then_a_correct_answer() {
    bounded(10, async {
        let dir = repo();
        let server = sim(TOOLS_THEN_ANSWER, 0, SimLimits::default());
        let a = agent(&server, dir.path(), settings(), Output::silent());
        let r = a
            .evaluate(
                0,
                &question("lang", "Which language is this?", &["Rust", "Go"]),
            )
            .await;
        assert_eq!(r.verdict, Verdict::Correct, "{r:?}");
        assert_eq!(r.parsed_answer.as_deref(), Some("Rust"));
        assert_eq!((r.steps, r.provider_requests), (4, 4));
        let names: Vec<_> = r
            .tool_calls
            .iter()
            .map(|c| (c.name.as_str(), c.ok))
            .collect();
        assert_eq!(
            names,
            [
                ("list_dir", true),
                ("read_file", true),
                ("read_file", false)
            ],
            "escape refused, loop continues"
        );
        assert!(r.tokens.prompt_tokens > 0 && r.tokens.completion_tokens > 0);
        assert_eq!(server.stats().requests, 4);
    })
    .await;
}

#[actix_rt::test]
async fn wrong_answers_and_unreadable_replies() {
    bounded(10, async {
        let dir = repo();
        let script = r#"
rules:
  - { match: wrong, answer: Go }
  - { match: untagged, reply: "It is probably Rust." }
  - { match: twice, reply: "<answer>Rust</answer> or <answer>Go</answer>" }
"#;
        let server = sim(script, 0, SimLimits::default());
        let a = agent(&server, dir.path(), settings(), Output::silent());
        let wrong = a
            .evaluate(0, &question("a", "wrong?", &["Rust", "Go"]))
            .await;
        assert_eq!(
            (wrong.verdict, wrong.parsed_answer.as_deref()),
            (Verdict::Incorrect, Some("Go"))
        );
        let untagged = a
            .evaluate(1, &question("b", "untagged?", &["Rust", "Go"]))
            .await;
        assert_eq!(untagged.verdict, Verdict::ParseError);
        assert_eq!(
            untagged.error.as_deref(),
            Some("no <answer>…</answer> in the reply")
        );
        let twice = a
            .evaluate(2, &question("c", "twice?", &["Rust", "Go"]))
            .await;
        assert_eq!(twice.verdict, Verdict::ParseError);
        assert!(twice.error.unwrap().contains("2 <answer> tags"));
    })
    .await;
}

fn with_budget(max_steps: u32, max_tokens: u64, max_seconds: u64) -> AgentSettings {
    AgentSettings {
        max_steps,
        budget: BudgetConfig {
            max_tokens,
            max_seconds,
        },
        ..settings()
    }
}

#[actix_rt::test]
async fn budget_exceeded_on_steps() {
    bounded(10, async {
        let dir = repo();
        let script = "rules:\n  - match: loop\n    tool_calls: [ {name: list_dir}, {name: list_dir}, {name: list_dir}, {name: list_dir} ]\n    answer: Rust\n";
        let server = sim(script, 0, SimLimits::default());
        let a = agent(&server, dir.path(), with_budget(3, 100_000, 30), Output::silent());
        let r = a.evaluate(0, &question("a", "loop?", &["Rust"])).await;
        assert_eq!(r.verdict, Verdict::BudgetExceeded);
        assert_eq!(r.error.as_deref(), Some("max_steps (3) reached without a final answer"));
        assert_eq!((r.steps, server.stats().requests), (3, 3));
    })
    .await;
}

#[actix_rt::test]
async fn budget_exceeded_on_tokens() {
    bounded(10, async {
        let dir = repo();
        let script = "rules:\n  - { match: heavy, usage: { prompt_tokens: 5000, completion_tokens: 10 }, answer: Rust }\n";
        let server = sim(script, 0, SimLimits::default());
        let a = agent(&server, dir.path(), with_budget(10, 1000, 30), Output::silent());
        let r = a.evaluate(0, &question("a", "heavy?", &["Rust"])).await;
        assert_eq!(r.verdict, Verdict::BudgetExceeded);
        assert_eq!(r.error.as_deref(), Some("budget.max_tokens (1000) exceeded: 5010 tokens after step 1"));
        assert_eq!(r.tokens.total(), 5010);
    })
    .await;
}

#[actix_rt::test]
async fn budget_exceeded_on_seconds() {
    bounded(10, async {
        let dir = repo();
        let script = "rules:\n  - { match: slow, latency_ms: 5000, answer: Rust }\n";
        let server = sim(script, 0, SimLimits::default());
        let a = agent(
            &server,
            dir.path(),
            with_budget(10, 100_000, 1),
            Output::silent(),
        );
        let started = Instant::now();
        let r = a.evaluate(0, &question("a", "slow?", &["Rust"])).await;
        assert_eq!(r.verdict, Verdict::BudgetExceeded);
        assert_eq!(
            r.error.as_deref(),
            Some("budget.max_seconds (1 s) exceeded during step 1")
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[actix_rt::test]
async fn provider_429_is_retried_after_its_retry_after() {
    bounded(10, async {
        let dir = repo();
        let script = "rules:\n  - { match: busy, fail_first: [429, 429], retry_after_ms: 150, answer: Rust }\n";
        let server = sim(script, 0, SimLimits::default());
        let a = agent(&server, dir.path(), settings(), Output::silent());
        let started = Instant::now();
        let r = a.evaluate(0, &question("a", "busy?", &["Rust"])).await;
        assert_eq!(r.verdict, Verdict::Correct, "{r:?}");
        assert_eq!((r.steps, r.provider_requests), (1, 3));
        assert!(started.elapsed() >= Duration::from_millis(300), "two Retry-After waits of 150 ms");
        let stats = server.stats();
        assert_eq!((stats.status_429, stats.ok), (2, 1));
    })
    .await;
}

#[actix_rt::test]
async fn simulator_limits_answer_429_and_the_agent_recovers() {
    bounded(10, async {
        let dir = repo();
        let limits = SimLimits {
            concurrency: Some(1),
            ..SimLimits::default()
        };
        let server = sim("{}", 100, limits);
        let a = agent(&server, dir.path(), settings(), Output::silent());
        let (q0, q1) = (
            question("a", "first?", &["Rust"]),
            question("b", "second?", &["Rust"]),
        );
        let (x, y) = futures::join!(a.evaluate(0, &q0), a.evaluate(1, &q1));
        assert_eq!((x.verdict, y.verdict), (Verdict::Correct, Verdict::Correct));
        let stats = server.stats();
        assert!(stats.rate_limited >= 1, "{stats:?}");
        assert_eq!(stats.max_in_flight, 1);
    })
    .await;
}

#[actix_rt::test]
async fn server_errors_after_all_retries_are_runtime_errors() {
    bounded(10, async {
        let dir = repo();
        let script = "rules:\n  - { match: broken, fail_first: [500, 502, 503], retry_after_ms: 5, answer: Rust }\n  - { match: refused, fail_first: [401], answer: Rust }\n";
        let server = sim(script, 0, SimLimits::default());
        let a = agent(&server, dir.path(), settings(), Output::silent());
        let r = a.evaluate(0, &question("a", "broken?", &["Rust"])).await;
        assert_eq!(r.verdict, Verdict::RuntimeError);
        let error = r.error.unwrap();
        assert!(error.contains("HTTP 503") && error.contains("after 3 attempt(s)"), "{error}");
        assert_eq!(r.provider_requests, 3);
        let r = a.evaluate(1, &question("b", "refused?", &["Rust"])).await;
        assert_eq!((r.verdict, r.provider_requests), (Verdict::RuntimeError, 1), "4xx is not retried");
        assert!(r.error.unwrap().contains("HTTP 401"));
    })
    .await;
}

#[actix_rt::test]
async fn unreachable_provider_is_a_runtime_error() {
    bounded(10, async {
        let dir = repo();
        let server = sim("{}", 0, SimLimits::default());
        let url = server.base_url();
        server.stop().await;
        let endpoint = ratelimiter::runner::provider::Endpoint {
            base_url: url,
            api_key: None,
        };
        let provider =
            ratelimiter::runner::provider::OpenAiProvider::new(endpoint, Duration::from_secs(2))
                .unwrap();
        let p = ratelimiter::runner::pipeline::CallPipeline::new(
            Arc::new(provider),
            Arc::new(DirectGate),
            "sim",
            crate::support::cogni::quick_retry(),
        );
        let tools = Arc::new(RepoTools::new(dir.path(), ToolLimits::default()).unwrap());
        let a = Agent::new("t", settings(), p, tools, Output::silent());
        let r = a.evaluate(0, &question("a", "anyone?", &["Rust"])).await;
        assert_eq!(r.verdict, Verdict::RuntimeError);
        assert!(r.error.unwrap().contains("provider unreachable"));
    })
    .await;
}

#[derive(Default)]
struct CountingHook {
    before: AtomicU32,
    after: AtomicU32,
    failures: AtomicU32,
}

impl CallHook for CountingHook {
    fn before_call(&self, ctx: &CallContext, request: &ChatRequest, spec: &CallSpec) {
        assert_eq!(spec.max_output_tokens, request.max_tokens.unwrap());
        assert!(spec.prompt_bytes > 0 && ctx.attempt >= 1);
        self.before.fetch_add(1, Ordering::SeqCst);
    }
    fn after_call(&self, _ctx: &CallContext, event: &CallEvent<'_>, _elapsed: Duration) {
        if matches!(event, CallEvent::ProviderFailed { .. }) {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        self.after.fetch_add(1, Ordering::SeqCst);
    }
}

#[actix_rt::test]
async fn hooks_run_around_every_attempt() {
    bounded(10, async {
        let dir = repo();
        let script = "rules:\n  - { match: hooks, fail_first: [503], retry_after_ms: 5, tool_calls: [ {name: list_dir} ], answer: Rust }\n";
        let server = sim(script, 0, SimLimits::default());
        let hook = Arc::new(CountingHook::default());
        let p = pipeline(&server, Arc::new(DirectGate)).with_hook(hook.clone());
        let tools = Arc::new(RepoTools::new(dir.path(), ToolLimits::default()).unwrap());
        let a = Agent::new("t", settings(), p, tools, Output::silent());
        let r = a.evaluate(0, &question("a", "hooks?", &["Rust"])).await;
        assert_eq!(r.verdict, Verdict::Correct);
        assert_eq!(hook.before.load(Ordering::SeqCst), 3, "1 failed attempt + 2 steps");
        assert_eq!(hook.after.load(Ordering::SeqCst), 3);
        assert_eq!(hook.failures.load(Ordering::SeqCst), 1);
    })
    .await;
}
