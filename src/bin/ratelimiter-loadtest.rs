//! `ratelimiter-loadtest`: drives a limiter (a `ratelimiterd` over HTTP, or the in-process
//! memory backend) with bounded reserve/complete loops and reports throughput and latency.
//!
//! Thin wiring: argument parsing, limit setup, and printing; the loops, histograms and
//! targets live in `ratelimiter::client::loadtest`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ratelimiter::client::loadtest::{
    generated_definitions, generated_targets, parse_duration, run_load, targets_from_states,
    DurationError, LoadConfig, ShareLimit, Target,
};
use ratelimiter::client::{
    BatchConfig, BatchConfigError, BatchingLimiter, HttpLimiter, HttpLimiterError, Limiter,
    LocalLimiter, LocalLimiterError,
};
use ratelimiter::limits_file::{read_limits_file, LimitsFileError};
use ratelimiter::model::{LimitDefinition, LimitState, SystemClock};
use thiserror::Error;

/// Why the load test could not run (exit status 2).
#[derive(Debug, Error)]
enum LoadtestError {
    /// Local mode embeds the memory backend only.
    #[error(
        "--backend tigerbeetle needs --mode http: start ratelimiterd with the TigerBeetle \
         backend and point --url at it (local mode embeds the memory backend only)"
    )]
    TigerbeetleNeedsHttp,
    /// The limits file cannot be used.
    #[error("--limits: {0}")]
    Limits(#[from] LimitsFileError),
    /// The limits file defines no LLM keys to drive.
    #[error("--limits: {path} has no global:llm:<provider>:<model>:rpm|tpm|concurrency keys")]
    NoTargets {
        /// The limits file.
        path: PathBuf,
    },
    /// The in-process limiter did not start.
    #[error("cannot start the local limiter: {0}")]
    Local(#[from] LocalLimiterError),
    /// The server URL cannot be used.
    #[error("--url: {0}")]
    Url(#[from] HttpLimiterError),
    /// The generated limits could not be defined on the server.
    #[error("cannot define the generated limits: {0}")]
    Define(#[from] DefineError),
    /// The batch settings break a rule.
    #[error(transparent)]
    Batch(#[from] BatchConfigError),
}

/// Why a generated limit could not be defined through the admin API.
#[derive(Debug, Error)]
enum DefineError {
    /// The HTTP client could not be created.
    #[error("cannot create the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The request got no answer.
    #[error("PUT {endpoint} ({key}): {reason}")]
    Send {
        /// The admin URL.
        endpoint: String,
        /// The key being defined.
        key: String,
        /// The error and its causes.
        reason: String,
    },
    /// The server refused the definition.
    #[error("PUT {endpoint} ({key}): HTTP {status}: {body}")]
    Refused {
        /// The admin URL.
        endpoint: String,
        /// The key being defined.
        key: String,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
    },
}

/// A `--duration` as clap reports it: the flag is named already, so the reason alone.
#[derive(Debug, Error)]
#[error("{}", .0.reason())]
struct DurationArgError(DurationError);

/// Where the limiter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A running `ratelimiterd` at `--url`.
    Http,
    /// The memory backend inside this process.
    Local,
}

/// The backend behind the limiter (for http, a label for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The in-memory backend.
    Memory,
    /// TigerBeetle (http mode only: start `ratelimiterd` with the TigerBeetle backend).
    Tigerbeetle,
}

/// Load-tests a rate limiter with synthetic LLM calls (rpm 1, tpm, concurrency 1 each).
#[derive(Debug, Parser)]
#[command(name = "ratelimiter-loadtest", version)]
struct Args {
    /// http: call a running ratelimiterd; local: embed the memory backend.
    #[arg(long, value_enum, default_value_t = Mode::Local)]
    mode: Mode,
    /// The server's backend (a label in http mode; local mode supports memory only).
    #[arg(long, value_enum, default_value_t = Backend::Memory)]
    backend: Backend,
    /// Base URL of ratelimiterd (http mode).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Limits file whose `global:llm:<provider>:<model>:*` keys are used; without it, huge
    /// limits are generated (and, in http mode, defined on the server through the admin API).
    #[arg(long, value_name = "FILE")]
    limits: Option<PathBuf>,
    /// How long to run: e.g. 500ms, 2s, 5m (at most 1h).
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    duration: Duration,
    /// Loops reserving at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// Synthetic providers to spread calls over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    providers: u64,
    /// Gather calls into batch calls of up to SIZE items (off when absent).
    #[arg(long, value_name = "SIZE", value_parser = clap::value_parser!(u64).range(1..=8189))]
    batch: Option<u64>,
    /// Longest wait before a partial batch is sent, in ms (with --batch).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1000))]
    flush_ms: u64,
    /// After a denial, wait the limiter's retry_after_ms before the next reserve (as a real
    /// client does); with --limits defining one provider, also print the share of its rpm
    /// limit admitted per window.
    #[arg(long)]
    respect_retry_after: bool,
    /// Per-request timeout of the HTTP client, in ms.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
}

fn duration_arg(text: &str) -> Result<Duration, DurationArgError> {
    parse_duration(text).map_err(DurationArgError)
}

/// Targets and the states that define them.
fn load_targets(args: &Args) -> Result<(Vec<Target>, Vec<LimitState>, bool), LoadtestError> {
    let wanted = args.providers as usize;
    match &args.limits {
        Some(path) => {
            let states = read_limits_file(path)?;
            let targets = targets_from_states(&states, wanted);
            if targets.is_empty() {
                return Err(LoadtestError::NoTargets { path: path.clone() });
            }
            if targets.len() < wanted {
                eprintln!(
                    "note: {} defines {} provider/model pair(s); using those instead of --providers {wanted}",
                    path.display(),
                    targets.len()
                );
            }
            Ok((targets, states, false))
        }
        None => {
            let targets = generated_targets(wanted);
            let states = generated_definitions(&targets)
                .into_iter()
                .map(LimitState::active)
                .collect();
            Ok((targets, states, true))
        }
    }
}

/// The error and its causes on one line (reqwest's top-level message alone says little).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Defines generated limits on the server through `PUT /v1/admin/limits`.
async fn define_on_server(url: &str, definitions: Vec<LimitDefinition>) -> Result<(), DefineError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(DefineError::Client)?;
    let endpoint = format!("{}/v1/admin/limits", url.trim_end_matches('/'));
    for definition in definitions {
        let response = client
            .put(&endpoint)
            .json(&definition)
            .send()
            .await
            .map_err(|e| DefineError::Send {
                endpoint: endpoint.clone(),
                key: definition.key.clone(),
                reason: chain(&e),
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(DefineError::Refused {
                endpoint,
                key: definition.key,
                status,
                body,
            });
        }
    }
    Ok(())
}

async fn build_limiter(
    args: &Args,
    states: Vec<LimitState>,
    generated: bool,
) -> Result<Arc<dyn Limiter>, LoadtestError> {
    match args.mode {
        Mode::Local => {
            let limiter = LocalLimiter::from_states(states, Arc::new(SystemClock)).await?;
            Ok(Arc::new(limiter))
        }
        Mode::Http => {
            let limiter = HttpLimiter::new(&args.url, Duration::from_millis(args.timeout_ms))?;
            if generated {
                let definitions = states.into_iter().map(|s| s.definition).collect();
                define_on_server(&args.url, definitions).await?;
            }
            Ok(Arc::new(limiter))
        }
    }
}

async fn run(args: Args) -> Result<bool, LoadtestError> {
    if args.mode == Mode::Local && args.backend == Backend::Tigerbeetle {
        return Err(LoadtestError::TigerbeetleNeedsHttp);
    }
    let (targets, states, generated) = load_targets(&args)?;
    // The share is measured on the rpm key of a single provider from a limits file.
    let share_of = match targets.as_slice() {
        [only] if args.respect_retry_after && !generated => only
            .requirements
            .iter()
            .find(|r| r.key.ends_with(":rpm"))
            .and_then(|r| ShareLimit::find(&states, &r.key)),
        _ => None,
    };
    let limiter = build_limiter(&args, states, generated).await?;
    let batcher = match args.batch {
        Some(size) => {
            let config = BatchConfig {
                size: size as usize,
                flush_ms: args.flush_ms,
            };
            Some(BatchingLimiter::start(limiter.clone(), config)?)
        }
        None => None,
    };
    let driven: Arc<dyn Limiter> = match &batcher {
        Some(batcher) => Arc::new(batcher.clone()),
        None => limiter,
    };
    let mode = match args.mode {
        Mode::Http => format!("http {}", args.url),
        Mode::Local => "local".to_string(),
    };
    let backend = match args.backend {
        Backend::Memory => "memory",
        Backend::Tigerbeetle => "tigerbeetle",
    };
    let header = format!(
        "mode {mode}, backend {backend}, {} provider(s), concurrency {}, batch {}, duration {:?}",
        targets.len(),
        args.concurrency,
        args.batch
            .map_or("off".to_string(), |s| format!("{s} / {} ms", args.flush_ms)),
        args.duration
    );
    eprintln!("ratelimiter-loadtest: {header}");
    let config = LoadConfig {
        duration: args.duration,
        concurrency: args.concurrency as usize,
        targets,
        respect_retry_after: args.respect_retry_after,
        share_of,
    };
    let report = run_load(driven, &config, |progress| eprintln!("{progress}")).await;
    println!("{header}");
    println!("{report}");
    if let Some(batcher) = &batcher {
        let stats = batcher.stats();
        let average = |items: u64, batches: u64| {
            if batches == 0 {
                0.0
            } else {
                items as f64 / batches as f64
            }
        };
        println!(
            "client batches: reserve {} calls ({:.1} items/call), complete {} calls ({:.1} items/call)",
            stats.reserve_batches,
            average(stats.reserve_items, stats.reserve_batches),
            stats.complete_batches,
            average(stats.complete_items, stats.complete_batches)
        );
    }
    Ok(report.totals.allowed + report.totals.denied > 0)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    match actix_rt::System::new().block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("ratelimiter-loadtest: no reserve was answered");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("ratelimiter-loadtest: {message}");
            ExitCode::from(2)
        }
    }
}
