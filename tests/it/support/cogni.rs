//! Cogni fixtures: a small repository, config files, questions, agents and the in-process
//! provider simulator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ratelimiter::runner::agent::{Agent, AgentSettings};
use ratelimiter::runner::config::BudgetConfig;
use ratelimiter::runner::config::LoadedConfig;
use ratelimiter::runner::gate::{CallGate, DirectGate};
use ratelimiter::runner::output::Output;
use ratelimiter::runner::pipeline::{CallPipeline, RetryPolicy, VerboseHook};
use ratelimiter::runner::provider::{Endpoint, OpenAiProvider};
use ratelimiter::runner::questions::Question;
use ratelimiter::runner::results::RunReport;
use ratelimiter::runner::run::{run_tasks, select_tasks, RunError, RunOptions};
use ratelimiter::runner::sim::{Script, SimConfig, SimLimits, SimServer};
use ratelimiter::runner::tools::{RepoTools, ToolLimits};

/// A tiny repository: `Cargo.toml`, `src/main.rs`, `docs/guide.md`.
pub fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Cargo.toml", "[package]\nname = \"demo\"\n");
    write(
        dir.path(),
        "src/main.rs",
        "fn main() {\n    println!(\"hello tokio\");\n}\n",
    );
    write(
        dir.path(),
        "docs/guide.md",
        "# Guide\nUse tokio for async.\n",
    );
    dir
}

/// Writes `text` to `root/relative`, creating directories.
pub fn write(root: &Path, relative: &str, text: &str) -> PathBuf {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// A question with choices `answers`, the first of which is correct.
pub fn question(id: &str, text: &str, answers: &[&str]) -> Question {
    Question {
        id: Some(id.into()),
        question: text.into(),
        answers: answers.iter().map(|a| a.to_string()).collect(),
        correct_answers: vec![answers[0].to_string()],
    }
}

/// Starts the simulator with a script (YAML text), latency and limits.
pub fn sim(script: &str, latency_ms: u64, limits: SimLimits) -> SimServer {
    SimServer::start(SimConfig {
        latency: Duration::from_millis(latency_ms),
        limits,
        script: Script::parse(script).unwrap(),
        ..SimConfig::default()
    })
    .unwrap()
}

/// Agent settings with generous budgets.
pub fn settings() -> AgentSettings {
    AgentSettings {
        model: "sim-1".into(),
        max_steps: 10,
        temperature: 0.0,
        max_output_tokens: 256,
        budget: BudgetConfig {
            max_tokens: 100_000,
            max_seconds: 30,
        },
    }
}

/// A fast retry policy for tests.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
    }
}

/// A pipeline to the simulator through `gate`.
pub fn pipeline(server: &SimServer, gate: Arc<dyn CallGate>) -> CallPipeline {
    let endpoint = Endpoint {
        base_url: server.base_url(),
        api_key: None,
    };
    let provider = OpenAiProvider::new(endpoint, Duration::from_secs(10)).unwrap();
    CallPipeline::new(Arc::new(provider), gate, "sim", quick_retry())
}

/// An agent over `root` talking to the simulator without limits.
pub fn agent(server: &SimServer, root: &Path, settings: AgentSettings, output: Output) -> Agent {
    let tools = RepoTools::new(root, ToolLimits::default()).unwrap();
    let pipeline = pipeline(server, Arc::new(DirectGate))
        .with_hook(Arc::new(VerboseHook::new(output.clone())));
    Agent::new("t", settings, pipeline, Arc::new(tools), output)
}

/// Runs every task of `loaded` with default options, as `cogni run` with no task ids does.
pub async fn run_every_task(loaded: &LoadedConfig) -> Result<RunReport, RunError> {
    run_tasks(loaded, select_tasks(loaded, &[])?, &RunOptions::default()).await
}
