//! `llm-sim`: an OpenAI-compatible chat-completions simulator with scripted agents, latency,
//! token usage and its own RPM/TPM/concurrency limits (an exact sliding window counted from
//! each request's arrival; 429 + Retry-After when exceeded).
//! Counters at `GET /sim/stats`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ratelimiter::runner::sim::{Script, SimConfig, SimLimits, SimServer};

#[derive(Parser)]
#[command(
    name = "llm-sim",
    version,
    about = "OpenAI-compatible LLM provider simulator"
)]
struct Args {
    /// Address to listen on (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Latency of every response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Requests per window (unlimited when absent).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rpm: Option<u64>,
    /// Tokens per window (unlimited when absent).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tpm: Option<u64>,
    /// The exact sliding window of --rpm and --tpm, counted from each request's arrival.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    window_seconds: u64,
    /// Requests in flight (unlimited when absent).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: Option<u64>,
    /// Script of agents (YAML or JSON); default: answer the first choice at once.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let script = match &args.script {
        Some(path) => match Script::load(path) {
            Ok(script) => script,
            Err(e) => {
                eprintln!("--script: {e}");
                std::process::exit(2);
            }
        },
        None => Script::default(),
    };
    let config = SimConfig {
        listen: args.listen,
        latency: Duration::from_millis(args.latency_ms),
        limits: SimLimits {
            rpm: args.rpm,
            tpm: args.tpm,
            concurrency: args.concurrency,
            window: Duration::from_secs(args.window_seconds),
        },
        script,
    };
    let server = match SimServer::start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("llm-sim: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!(
        "llm-sim listening on {} (stats: http://{}/sim/stats)",
        server.base_url(),
        server.addr()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        }),
        Err(e) => eprintln!("llm-sim: {e}"),
    }
    let stats = server.stats();
    println!(
        "llm-sim stopped: {} requests, {} ok, {} x 429 ({} from its limits), max in flight {}",
        stats.requests, stats.ok, stats.status_429, stats.rate_limited, stats.max_in_flight
    );
}
