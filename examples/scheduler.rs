//! Embedding the scheduler: eight fake LLM calls over two providers, run as fast as the
//! limits in `examples/limits.json` allow (OpenAI: one call in flight; Anthropic: two).
//!
//! ```text
//! cargo run --example scheduler                                  # in-process limiter
//!
//! cargo run --bin ratelimiterd -- --limits examples/limits.json --registry /tmp/example-registry.json &
//! cargo run --example scheduler -- --url http://127.0.0.1:8080   # the same through ratelimiterd
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::FutureExt;
use ratelimiter::client::{
    HttpLimiter, JobOutput, JobSpec, Limiter, LocalLimiter, SchedulerConfig, SchedulerHandle,
};
use ratelimiter::model::SystemClock;

const LIMITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/limits.json");

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = match args.iter().position(|a| a == "--url") {
        Some(i) => Some(args.get(i + 1).ok_or("--url needs a value")?.clone()),
        None => None,
    };

    // 1. A limiter: a running ratelimiterd, or the memory backend in this process.
    let limiter: Arc<dyn Limiter> = match &url {
        Some(url) => Arc::new(HttpLimiter::new(url, Duration::from_secs(2))?),
        None => Arc::new(LocalLimiter::from_limits_file(LIMITS, Arc::new(SystemClock)).await?),
    };

    // 2. A scheduler over it.
    let scheduler = SchedulerHandle::start(
        limiter,
        SchedulerConfig {
            workers: 4,
            ..SchedulerConfig::default()
        },
    );

    // 3. Every LLM call goes through `run`: reserve, execute, complete with the real tokens.
    let start = Instant::now();
    let calls = (0..8).map(|i| {
        let (provider, model) = if i % 2 == 0 {
            ("openai", "gpt-4o")
        } else {
            ("anthropic", "claude-sonnet-4")
        };
        let prompt = format!("question {i}: what does this repository do?");
        let spec = JobSpec::new(provider, model, prompt.len() as u64, 256).with_tenant("acme");
        scheduler.run(spec, move || {
            async move {
                // Stand-in for the provider call; a real one reports usage.total_tokens.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let answer = format!("{provider} answered {prompt:?}");
                JobOutput {
                    value: (answer, start.elapsed()),
                    actual_tokens: 120,
                }
            }
            .boxed()
        })
    });
    for result in join_all(calls).await {
        let (answer, at) = result?;
        println!("{:>6} ms  {answer}", at.as_millis());
    }

    // 4. Stop taking jobs; nothing is left, so this returns at once.
    let report = scheduler.shutdown(Duration::from_secs(5)).await;
    println!(
        "done in {} ms; shutdown drained {} and cancelled {} job(s)",
        start.elapsed().as_millis(),
        report.drained.len(),
        report.cancelled.len()
    );
    Ok(())
}
