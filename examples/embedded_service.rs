//! The limiter service in this process, called directly: a reserve and its complete on the
//! four keys of one gpt-4o call, as commands (the lease id stays a `LeaseId`, the keys are
//! the program's own constants: nothing is turned into text or copied per call).
//!
//! Run: `cargo run --example embedded_service`

use std::path::Path;

use ratelimiter::actors::MemoryBackend;
use ratelimiter::model::{
    new_lease_id, Actual, CompleteCommand, Requirement, ReserveCommand, RetryPolicy, SystemClock,
};
use ratelimiter::service::{LimiterService, ServiceSettings};

/// The keys of one gpt-4o call for tenant acme, as defined in `examples/limits.json`.
const RPM: &str = "global:llm:openai:gpt-4o:rpm";
const TPM: &str = "global:llm:openai:gpt-4o:tpm";
const IN_FLIGHT: &str = "global:llm:openai:gpt-4o:concurrency";
const DAILY: &str = "tenant:acme:llm:daily_tokens";

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = MemoryBackend::start(std::sync::Arc::new(SystemClock), RetryPolicy::default());
    let limits = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/limits.json");
    let service =
        LimiterService::start_from_limits_file(backend, &limits, ServiceSettings::default())
            .await?;

    let (prompt_tokens, max_tokens) = (1_200, 800);
    let lease = new_lease_id();
    let reserve = ReserveCommand::new(
        lease,
        vec![
            Requirement::static_key(RPM, 1),
            Requirement::static_key(TPM, prompt_tokens + max_tokens),
            Requirement::static_key(IN_FLIGHT, 1),
            Requirement::static_key(DAILY, prompt_tokens + max_tokens),
        ],
    );
    // `Err` only for a command that breaks a rule of the API (the message names the field).
    let answer = service.reserve_command(reserve).await?;
    if !answer.allowed {
        println!(
            "denied: retry in {} ms ({})",
            answer.retry_after_ms, answer.error
        );
        return Ok(());
    }
    println!(
        "allowed at {} (Unix ms); calling the model...",
        answer.reserved_at_unix_ms
    );

    let used_tokens = 1_650; // what the provider reported
    let complete = CompleteCommand::new(
        lease,
        vec![
            Actual::static_key(TPM, used_tokens),
            Actual::static_key(DAILY, used_tokens),
        ],
    );
    let done = service.complete_command(complete).await?;
    println!("completed: {}", if done.ok { "ok" } else { &done.error });
    if let Some(info) = service.get(TPM).await? {
        let capacity = info.state.definition.capacity;
        println!("{TPM}: {} of {capacity} in use", info.usage.in_use);
    }
    Ok(())
}
