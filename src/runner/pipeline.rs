//! The call pipeline: [`CallPipeline::run_call`] sends one logical provider request through
//! the gate (where the limiter reserves before and completes after), with before/after hooks
//! around every HTTP attempt and bounded retries of 429 and 5xx answers that honour the
//! provider's Retry-After. Each attempt is its own gated request, so every request the
//! provider sees was reserved.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use thiserror::Error;

use super::gate::{CallGate, CallSpec, GateError, ProviderAttempt};
use super::output::{Output, Style};
use super::provider::{ChatProvider, ChatRequest, ChatResponse, ProviderError};

/// How provider failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most HTTP attempts per logical request (≥ 1).
    pub max_attempts: u32,
    /// First backoff when the provider gave no Retry-After; doubles per attempt.
    pub base_delay: Duration,
    /// Cap of the computed backoff.
    pub max_delay: Duration,
    /// Cap of a provider-requested Retry-After.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after `error` on attempt `attempt` (1-based).
    pub fn delay(&self, error: &ProviderError, attempt: u32) -> Duration {
        match error.retry_after() {
            Some(wait) => wait.min(self.max_retry_after),
            None => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
                self.base_delay.saturating_mul(factor).min(self.max_delay)
            }
        }
    }
}

/// Where a provider request belongs; hooks use it to label what they see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// Task id.
    pub task: String,
    /// Question id.
    pub question: String,
    /// Agent step (1-based).
    pub step: u32,
    /// HTTP attempt within the step (1-based).
    pub attempt: u32,
    /// HTTP requests sent so far for this question.
    pub requests_sent: u32,
}

/// What happened to one attempt.
#[derive(Debug)]
pub enum CallEvent<'a> {
    /// The provider answered.
    Response(&'a ChatResponse),
    /// The provider failed; `retry_in` is set when another attempt follows.
    ProviderFailed {
        /// The failure.
        error: &'a ProviderError,
        /// Wait before the next attempt, if there is one.
        retry_in: Option<Duration>,
    },
    /// The limiter refused to run the request.
    GateFailed(&'a GateError),
}

/// Observes every provider attempt; hooks must not block.
pub trait CallHook: Send + Sync {
    /// Called before the attempt goes to the gate.
    fn before_call(&self, _ctx: &CallContext, _request: &ChatRequest, _spec: &CallSpec) {}
    /// Called after the attempt, with the time spent in the gate and the provider.
    fn after_call(&self, _ctx: &CallContext, _event: &CallEvent<'_>, _elapsed: Duration) {}
}

/// Why a logical request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    /// The provider failed, and retries (if allowed) did not help.
    #[error("{error} (after {attempts} attempt(s))")]
    Provider {
        /// The last error.
        error: ProviderError,
        /// Attempts made.
        attempts: u32,
    },
    /// The limiter refused.
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Sends requests of one agent through the gate, with hooks and retries.
#[derive(Clone)]
pub struct CallPipeline {
    provider: Arc<dyn ChatProvider>,
    gate: Arc<dyn CallGate>,
    hooks: Vec<Arc<dyn CallHook>>,
    retry: RetryPolicy,
    provider_name: String,
    tenant: Option<String>,
}

impl CallPipeline {
    /// A pipeline for `provider_name` (used in limit keys) with no hooks.
    pub fn new(
        provider: Arc<dyn ChatProvider>,
        gate: Arc<dyn CallGate>,
        provider_name: impl Into<String>,
        retry: RetryPolicy,
    ) -> CallPipeline {
        CallPipeline {
            provider,
            gate,
            hooks: Vec::new(),
            retry,
            provider_name: provider_name.into(),
            tenant: None,
        }
    }

    /// Adds a hook; hooks run in the order added.
    pub fn with_hook(mut self, hook: Arc<dyn CallHook>) -> CallPipeline {
        self.hooks.push(hook);
        self
    }

    /// Sets the tenant carried in every reservation.
    pub fn with_tenant(mut self, tenant: Option<String>) -> CallPipeline {
        self.tenant = tenant;
        self
    }

    /// Sends `request`, retrying 429/5xx up to the policy's attempts.
    pub async fn run_call(
        &self,
        ctx: &mut CallContext,
        request: ChatRequest,
    ) -> Result<ChatResponse, CallError> {
        let prompt_bytes = serde_json::to_vec(&request)
            .map(|b| b.len() as u64)
            .unwrap_or(0);
        let spec = CallSpec {
            provider: self.provider_name.clone(),
            model: request.model.clone(),
            tenant: self.tenant.clone(),
            prompt_bytes,
            max_output_tokens: request.max_tokens.unwrap_or(0),
        };
        let request = Arc::new(request);
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            ctx.attempt = attempt;
            ctx.requests_sent += 1;
            for hook in &self.hooks {
                hook.before_call(ctx, &request, &spec);
            }
            let started = Instant::now();
            let provider = Arc::clone(&self.provider);
            let req = Arc::clone(&request);
            let upper = spec.upper_tokens();
            let execute = Box::new(move || {
                async move {
                    let result = provider.send(&req).await;
                    let actual_tokens = match &result {
                        Ok(ChatResponse {
                            usage: Some(usage), ..
                        }) => usage.total(),
                        _ => upper,
                    };
                    ProviderAttempt {
                        result,
                        actual_tokens,
                    }
                }
                .boxed()
            });
            let outcome = self.gate.gated(spec.clone(), execute).await;
            let elapsed = started.elapsed();
            let attempt_result = match outcome {
                Ok(attempt) => attempt.result,
                Err(gate_error) => {
                    self.notify(ctx, &CallEvent::GateFailed(&gate_error), elapsed);
                    return Err(CallError::Gate(gate_error));
                }
            };
            match attempt_result {
                Ok(response) => {
                    self.notify(ctx, &CallEvent::Response(&response), elapsed);
                    return Ok(response);
                }
                Err(error) => {
                    let retry_in = (error.is_retryable() && attempt < max_attempts)
                        .then(|| self.retry.delay(&error, attempt));
                    self.notify(
                        ctx,
                        &CallEvent::ProviderFailed {
                            error: &error,
                            retry_in,
                        },
                        elapsed,
                    );
                    match retry_in {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => {
                            return Err(CallError::Provider {
                                error,
                                attempts: attempt,
                            })
                        }
                    }
                }
            }
        }
    }

    fn notify(&self, ctx: &CallContext, event: &CallEvent<'_>, elapsed: Duration) {
        for hook in &self.hooks {
            hook.after_call(ctx, event, elapsed);
        }
    }
}

/// Writes one detail line per attempt (console when `--verbose`, always to `--log`).
#[derive(Debug, Clone)]
pub struct VerboseHook {
    output: Output,
}

impl VerboseHook {
    /// A hook writing to `output`.
    pub fn new(output: Output) -> VerboseHook {
        VerboseHook { output }
    }
}

impl CallHook for VerboseHook {
    fn before_call(&self, ctx: &CallContext, request: &ChatRequest, spec: &CallSpec) {
        self.output.detail(&format!(
            "[{} {}] step {} attempt {} → {} messages, {} bytes, max_tokens {}",
            ctx.task,
            ctx.question,
            ctx.step,
            ctx.attempt,
            request.messages.len(),
            spec.prompt_bytes,
            spec.max_output_tokens
        ));
    }

    fn after_call(&self, ctx: &CallContext, event: &CallEvent<'_>, elapsed: Duration) {
        let label = format!(
            "[{} {}] step {} attempt {}",
            ctx.task, ctx.question, ctx.step, ctx.attempt
        );
        let ms = elapsed.as_millis();
        let text = match event {
            CallEvent::Response(response) => {
                let usage = response.usage.unwrap_or_default();
                format!(
                    "{label} ← {ms} ms, tokens {}+{}",
                    usage.prompt_tokens, usage.completion_tokens
                )
            }
            CallEvent::ProviderFailed { error, retry_in } => {
                let next = match retry_in {
                    Some(wait) => format!("retrying in {} ms", wait.as_millis()),
                    None => "giving up".into(),
                };
                self.output.paint(
                    Style::Yellow,
                    &format!("{label} ← {ms} ms, {error}; {next}"),
                )
            }
            CallEvent::GateFailed(error) => {
                self.output.paint(Style::Red, &format!("{label} ← {error}"))
            }
        };
        self.output.detail(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_honours_retry_after_else_backs_off() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(3),
        };
        let server = |retry_after| ProviderError::Server {
            status: 500,
            retry_after,
            body: String::new(),
        };
        assert_eq!(policy.delay(&server(None), 1), Duration::from_millis(100));
        assert_eq!(policy.delay(&server(None), 2), Duration::from_millis(200));
        assert_eq!(policy.delay(&server(None), 3), Duration::from_millis(350));
        assert_eq!(
            policy.delay(&server(Some(Duration::from_secs(1))), 3),
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.delay(&server(Some(Duration::from_secs(60))), 1),
            Duration::from_secs(3)
        );
    }
}
