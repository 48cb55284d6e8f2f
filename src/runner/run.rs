//! Orchestration of one run: build the limiter once, then per task load the questions, wire
//! provider → gate → pipeline → agent, run the worker pool, and collect the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::agent::{Agent, AgentSettings};
use super::config::{ConfigError, LoadedConfig, TaskConfig, QUESTION_EVAL};
use super::eval::{task_status, Verdict, VerdictCounts};
use super::limiter_setup::{RunLimiter, SetupError};
use super::output::{Output, Style};
use super::pipeline::{CallPipeline, RetryPolicy, VerboseHook};
use super::pool::run_pool;
use super::provider::{Endpoint, OpenAiProvider, ProviderSetupError, TokenUsage};
use super::questions::{Question, QuestionsFile};
use super::results::{print_summary, RunReport, TaskReport};
use super::tools::{RepoTools, ToolLimits};
use crate::model::rfc3339_utc;
use crate::model::{Clock, SystemClock};

/// Looks up an environment variable (injectable so tests need not touch the process env).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// Knobs of a run that do not come from the config file.
#[derive(Clone)]
pub struct RunOptions {
    /// Overrides `repo.output_dir`.
    pub output_dir: Option<PathBuf>,
    /// Console and log output.
    pub output: Output,
    /// Environment lookup for `LLM_BASE_URL` / `LLM_API_KEY`.
    pub env: EnvLookup,
    /// Retry policy of provider requests.
    pub retry: RetryPolicy,
    /// Bounds of the repository tools.
    pub tool_limits: ToolLimits,
    /// Whether to print the summary table at the end.
    pub print_summary: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            output_dir: None,
            output: Output::silent(),
            env: process_env(),
            retry: RetryPolicy::default(),
            tool_limits: ToolLimits::default(),
            print_summary: true,
        }
    }
}

/// Why a run could not start or finish.
#[derive(Debug, Error)]
pub enum RunError {
    /// A config or questions file is invalid (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A task or agent choice on the command line is invalid (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The limiter settings or limits are invalid (exit code 2).
    #[error(transparent)]
    Limiter(#[from] SetupError),
    /// No provider client for the task's agent: no base URL is known (exit code 2), or the
    /// HTTP client could not be built (exit code 1).
    #[error(transparent)]
    Provider(#[from] ProviderSetupError),
    /// Something else failed at run time (provider setup, repository root, writing results).
    #[error("{0}")]
    Runtime(String),
}

impl RunError {
    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) | RunError::Usage(_) | RunError::Limiter(_) => 2,
            RunError::Provider(ProviderSetupError::NoBaseUrl { .. }) => 2,
            RunError::Provider(ProviderSetupError::Client { .. }) | RunError::Runtime(_) => 1,
        }
    }
}

/// The tasks `cogni run` executes: all of them, or those named (in the order named).
pub fn select_tasks(loaded: &LoadedConfig, ids: &[String]) -> Result<Vec<TaskConfig>, RunError> {
    let tasks = &loaded.config.tasks;
    if ids.is_empty() {
        if tasks.is_empty() {
            return Err(RunError::Usage(format!(
                "{}: tasks: no tasks to run",
                loaded.path.display()
            )));
        }
        return Ok(tasks.clone());
    }
    ids.iter()
        .map(|id| {
            tasks.iter().find(|t| &t.id == id).cloned().ok_or_else(|| {
                let known: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
                RunError::Usage(format!(
                    "unknown task {id:?} (tasks in {}: {})",
                    loaded.path.display(),
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// The ad-hoc task of `cogni eval FILE [--agent ID]`.
pub fn eval_task(
    loaded: &LoadedConfig,
    questions_file: PathBuf,
    agent: Option<String>,
) -> Result<TaskConfig, RunError> {
    if let Some(id) = &agent {
        if loaded.config.agent(id).is_none() {
            return Err(RunError::Usage(format!(
                "--agent: no agent with id {id:?} in {}",
                loaded.path.display()
            )));
        }
    }
    let id = questions_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "eval".into());
    let questions_file = std::path::absolute(&questions_file).unwrap_or(questions_file);
    Ok(TaskConfig {
        id,
        kind: QUESTION_EVAL.into(),
        agent,
        questions_file: Some(questions_file),
        budget: Default::default(),
        concurrency: None,
    })
}

/// A task with everything loaded before anything runs.
struct Prepared {
    task: TaskConfig,
    questions_file: PathBuf,
    questions: Vec<Question>,
}

/// Runs `tasks` with the limiter the config describes (built once for the run) and writes
/// `results.json`; must run inside an actix System.
pub async fn run_tasks(
    loaded: &LoadedConfig,
    tasks: Vec<TaskConfig>,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let prepared = prepare(loaded, tasks)?;
    let limiter = RunLimiter::build(loaded).await?;
    run_prepared(loaded, prepared, limiter, options).await
}

/// Runs `tasks` through an already built limiter (embedding, tests) and writes
/// `results.json`; must run inside an actix System.
pub async fn run_tasks_with(
    loaded: &LoadedConfig,
    tasks: Vec<TaskConfig>,
    limiter: RunLimiter,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let prepared = prepare(loaded, tasks)?;
    run_prepared(loaded, prepared, limiter, options).await
}

/// Loads every task's questions before anything runs, so a bad file fails fast.
fn prepare(loaded: &LoadedConfig, tasks: Vec<TaskConfig>) -> Result<Vec<Prepared>, RunError> {
    let mut prepared = Vec::with_capacity(tasks.len());
    for task in tasks {
        let file = task
            .questions_file
            .clone()
            .ok_or_else(|| RunError::Usage(format!("task {:?} has no questions_file", task.id)))?;
        let questions_file = loaded.resolve(&file);
        let questions = QuestionsFile::load(&questions_file)?.questions;
        prepared.push(Prepared {
            task,
            questions_file,
            questions,
        });
    }
    Ok(prepared)
}

async fn run_prepared(
    loaded: &LoadedConfig,
    prepared: Vec<Prepared>,
    limiter: RunLimiter,
    options: &RunOptions,
) -> Result<RunReport, RunError> {
    let started_ms = SystemClock.now_ms();
    let started = Instant::now();
    let mut reports = Vec::with_capacity(prepared.len());
    for p in &prepared {
        reports.push(run_one(loaded, p, &limiter, options).await?);
    }
    let mode = limiter.mode();
    limiter.shutdown().await;
    let report = RunReport {
        run_id: ulid::Ulid::new().to_string(),
        config_path: loaded.path.display().to_string(),
        repo_root: loaded.root.display().to_string(),
        limiter_mode: mode.to_string(),
        started_at: rfc3339_utc(started_ms),
        finished_at: rfc3339_utc(SystemClock.now_ms()),
        wall_time_ms: millis(started.elapsed()),
        tasks: reports,
    };
    let dir = options
        .output_dir
        .clone()
        .unwrap_or_else(|| loaded.output_dir());
    let path = report.write(&dir).map_err(|e| {
        RunError::Runtime(format!("cannot write results to {}: {e}", dir.display()))
    })?;
    if options.print_summary {
        print_summary(&report, &options.output);
        options.output.line(&format!("results: {}", path.display()));
    }
    Ok(report)
}

async fn run_one(
    loaded: &LoadedConfig,
    p: &Prepared,
    limiter: &RunLimiter,
    options: &RunOptions,
) -> Result<TaskReport, RunError> {
    let config = &loaded.config;
    let task = &p.task;
    let agent_config = config
        .task_agent(task)
        .ok_or_else(|| RunError::Usage(format!("task {:?}: unknown agent", task.id)))?;
    let env = Arc::clone(&options.env);
    let endpoint = Endpoint::resolve(agent_config, &move |name| env(name))?;
    let request_timeout = Duration::from_secs(task.budget.max_seconds.max(1));
    let provider = OpenAiProvider::new(endpoint, request_timeout)?;
    let workers = config.task_concurrency(task);
    let gate = limiter.gate_for_task(workers);
    let pipeline = CallPipeline::new(
        Arc::new(provider),
        gate.gate(),
        agent_config.provider.clone(),
        options.retry,
    )
    .with_hook(Arc::new(VerboseHook::new(options.output.clone())));
    let tools = RepoTools::new(&loaded.root, options.tool_limits).map_err(|e| {
        RunError::Runtime(format!("repository root {}: {e}", loaded.root.display()))
    })?;
    let settings = AgentSettings {
        model: agent_config.model.clone(),
        max_steps: agent_config.max_steps,
        temperature: agent_config.temperature,
        max_output_tokens: config.rate_limiter.max_output_tokens,
        budget: task.budget,
    };
    let agent = Arc::new(Agent::new(
        task.id.clone(),
        settings,
        pipeline,
        Arc::new(tools),
        options.output.clone(),
    ));
    let output = &options.output;
    output.line(&output.paint(
        Style::Bold,
        &format!(
            "[{}] {} questions, {workers} worker(s), {}/{}, limiter {}",
            task.id,
            p.questions.len(),
            agent_config.provider,
            agent_config.model,
            limiter.mode()
        ),
    ));
    let started = Instant::now();
    let total = p.questions.len();
    let mut done = 0usize;
    output.progress(&task.id, 0, total);
    let questions = run_pool(agent, &p.questions, workers, |r| {
        done += 1;
        let style = if r.verdict == Verdict::Correct {
            Style::Green
        } else {
            Style::Yellow
        };
        output.line(&format!(
            "[{}] {done}/{total} {} {} ({} ms)",
            task.id,
            r.id,
            output.paint(style, r.verdict.as_str()),
            r.wall_time_ms
        ));
        output.progress(&task.id, done, total);
    })
    .await;
    gate.finish().await;
    let counts = VerdictCounts::of(&questions);
    let mut tokens = TokenUsage::default();
    for q in &questions {
        tokens.add(&q.tokens);
    }
    Ok(TaskReport {
        id: task.id.clone(),
        kind: task.kind.clone(),
        agent: agent_config.id.clone(),
        provider: agent_config.provider.clone(),
        model: agent_config.model.clone(),
        questions_file: p.questions_file.display().to_string(),
        workers,
        status: task_status(&questions),
        accuracy: counts.accuracy,
        counts,
        tokens,
        provider_requests: questions
            .iter()
            .map(|q| u64::from(q.provider_requests))
            .sum(),
        wall_time_ms: millis(started.elapsed()),
        questions,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
