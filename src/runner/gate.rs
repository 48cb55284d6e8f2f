//! The gate every provider request passes through. [`SchedulerGate`] reserves capacity
//! through the client scheduler before the request and completes with the tokens the
//! provider reported after it; [`DirectGate`] just runs the request.

use async_trait::async_trait;
use futures::future::BoxFuture;
use thiserror::Error;

use super::provider::{ChatResponse, ProviderError};
use crate::client::{JobOutput, JobSpec, SchedulerHandle};

/// What one provider request needs from the limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// Provider name (limit keys `global:llm:<provider>:<model>:*`).
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Tenant for per-tenant budgets, if any.
    pub tenant: Option<String>,
    /// Bytes of the request body: a safe over-estimate of its prompt tokens.
    pub prompt_bytes: u64,
    /// The request's `max_tokens`.
    pub max_output_tokens: u64,
}

impl CallSpec {
    /// The token upper bound reserved for the request (SPEC §6).
    pub fn upper_tokens(&self) -> u64 {
        self.prompt_bytes.saturating_add(self.max_output_tokens)
    }
}

/// The result of one provider request and the tokens to report for it.
#[derive(Debug, Clone)]
pub struct ProviderAttempt {
    /// The provider's answer or error.
    pub result: Result<ChatResponse, ProviderError>,
    /// Tokens to complete the reservation with: the reported usage, or the upper bound when
    /// the provider reported none (when in doubt, over-count).
    pub actual_tokens: u64,
}

/// The request itself, run once the gate lets it through.
pub type Execute = Box<dyn FnOnce() -> BoxFuture<'static, ProviderAttempt> + Send>;

/// The limiter refused to run the request at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("rate limiter: {0}")]
pub struct GateError(pub String);

/// Runs provider requests, possibly after reserving capacity for them.
#[async_trait]
pub trait CallGate: Send + Sync + 'static {
    /// Runs `execute` when `spec` may go ahead, and returns its attempt.
    async fn gated(&self, spec: CallSpec, execute: Execute) -> Result<ProviderAttempt, GateError>;
}

/// A gate with no limits: runs every request at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectGate;

#[async_trait]
impl CallGate for DirectGate {
    async fn gated(&self, _spec: CallSpec, execute: Execute) -> Result<ProviderAttempt, GateError> {
        Ok(execute().await)
    }
}

/// The rate-limited gate: each request is a scheduler job (rpm 1, tpm = request bytes +
/// `max_tokens`, concurrency 1), completed with the attempt's actual tokens.
#[derive(Debug, Clone)]
pub struct SchedulerGate {
    handle: SchedulerHandle,
}

impl SchedulerGate {
    /// A gate submitting to `handle`.
    pub fn new(handle: SchedulerHandle) -> SchedulerGate {
        SchedulerGate { handle }
    }
}

#[async_trait]
impl CallGate for SchedulerGate {
    async fn gated(&self, spec: CallSpec, execute: Execute) -> Result<ProviderAttempt, GateError> {
        let job = JobSpec {
            provider: spec.provider,
            model: spec.model,
            tenant: spec.tenant,
            prompt_bytes: spec.prompt_bytes,
            max_output_tokens: spec.max_output_tokens,
        };
        self.handle
            .run(job, move || {
                let attempt = execute();
                Box::pin(async move {
                    let attempt = attempt.await;
                    JobOutput {
                        actual_tokens: attempt.actual_tokens,
                        value: attempt,
                    }
                })
            })
            .await
            .map_err(|e| {
                if e.is_unreachable() {
                    GateError(format!(
                        "{e}; not admitted: the provider request was not sent"
                    ))
                } else {
                    GateError(e.to_string())
                }
            })
    }
}
