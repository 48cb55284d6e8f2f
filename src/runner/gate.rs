//! The gate every provider request passes through. The rate-limited implementation reserves
//! capacity through the client scheduler before the request and completes with the tokens
//! the provider reported after it; [`DirectGate`] just runs the request.

use async_trait::async_trait;
use futures::future::BoxFuture;
use thiserror::Error;

use super::provider::{ChatResponse, ProviderError};

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
