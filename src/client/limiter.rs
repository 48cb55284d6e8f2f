//! The `Limiter` trait: what every program that calls an LLM talks to (SPEC §6).

use async_trait::async_trait;
use thiserror::Error;

use crate::model::{
    CompleteRequest, CompleteResponse, LimitDefinition, ReserveRequest, ReserveResponse,
};

/// Why a limiter call produced no answer.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LimiterError {
    /// No answer in time: the outcome is unknown, retry with the same lease id.
    #[error("limiter call timed out after {0} ms")]
    Timeout(u64),
    /// The request did not reach the limiter or the answer was lost: the outcome is
    /// unknown, retry with the same lease id.
    #[error("limiter unreachable: {0}")]
    Transport(String),
    /// The limiter refused the request as invalid (HTTP 400); retrying cannot help.
    #[error("limiter rejected the request: {0}")]
    Rejected(String),
    /// The limiter answered something this client cannot read.
    #[error("unexpected answer from the limiter: {0}")]
    Protocol(String),
}

impl LimiterError {
    /// Whether the call may have taken effect, so a retry must reuse the same lease id.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(
            self,
            LimiterError::Timeout(_) | LimiterError::Transport(_) | LimiterError::Protocol(_)
        )
    }
}

/// A rate limiter: reserve before a call, complete after it.
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Asks for every requirement of one call.
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveResponse, LimiterError>;

    /// Reports what an allowed call really used.
    async fn complete(&self, request: CompleteRequest) -> Result<CompleteResponse, LimiterError>;

    /// Reserves many calls in one round trip; `results[i]` answers `requests[i]`.
    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError>;

    /// Completes many calls in one round trip; `results[i]` answers `requests[i]`.
    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError>;

    /// The definition of `key` as the limiter holds it, `None` for an unknown key or a
    /// limiter that cannot tell. Off the hot path: used to explain a refusal (e.g. the
    /// capacity an `exceeds_capacity` requirement went over).
    async fn definition(&self, key: &str) -> Result<Option<LimitDefinition>, LimiterError> {
        let _ = key;
        Ok(None)
    }
}

/// A limiter that allows everything (rate limiting disabled).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopLimiter;

fn now_ms() -> i64 {
    use crate::model::Clock;
    crate::model::SystemClock.now_ms()
}

#[async_trait]
impl Limiter for NoopLimiter {
    async fn reserve(&self, _request: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        Ok(ReserveResponse::allowed(now_ms()))
    }

    async fn complete(&self, _request: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        Ok(CompleteResponse::ok())
    }

    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        let now = now_ms();
        Ok(requests
            .iter()
            .map(|_| ReserveResponse::allowed(now))
            .collect())
    }

    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        Ok(requests.iter().map(|_| CompleteResponse::ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LeaseId, Requirement};

    #[actix_rt::test]
    async fn noop_allows_everything() {
        let limiter = NoopLimiter;
        let request = ReserveRequest::new(LeaseId::new(), vec![Requirement::new("k", 1)]);
        assert!(limiter.reserve(request.clone()).await.unwrap().allowed);
        let all = limiter
            .batch_reserve(vec![request.clone(), request])
            .await
            .unwrap();
        assert!(all.iter().all(|r| r.allowed));
        assert!(LimiterError::Timeout(1).is_unknown_outcome());
        assert!(!LimiterError::Rejected("x".into()).is_unknown_outcome());
    }
}
