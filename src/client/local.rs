//! [`LocalLimiter`]: the [`Limiter`] over an in-process [`LimiterService`] with the memory
//! backend — one program, no server. Calls go straight into the service, so the local
//! client has exactly the semantics of `ratelimiterd` (SPEC §4) without a network hop:
//! it never times out and never has a transport error. A request the service finds invalid
//! is [`LimiterError::Rejected`], like an HTTP 400.
//!
//! Capacity decreases only apply when something calls
//! [`LimiterService::apply_pending_decreases`]; a program that changes limits at run time
//! through [`LocalLimiter::service`] starts a
//! [`DecreaseApplier`](crate::actors::DecreaseApplier) over it.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use super::limiter::{Limiter, LimiterError};
use crate::actors::MemoryBackend;
use crate::limits_file::{read_limits_file, validate_limit_states, InvalidLimits, LimitsFileError};
use crate::model::{
    CompleteRequest, CompleteResponse, InvalidRequest, LimitDefinition, LimitState, ReserveRequest,
    ReserveResponse, SharedClock,
};
use crate::service::{LimiterService, RegistrySource, ServiceSettings, StartError};

/// Why a local limiter could not start.
#[derive(Debug, Error)]
pub enum LocalLimiterError {
    /// The limits file is missing, unreadable or invalid (the message names the file).
    #[error(transparent)]
    LimitsFile(#[from] LimitsFileError),
    /// An inline limit state breaks a rule.
    #[error("limits[{index}] ({key:?}): {source}")]
    InvalidState {
        /// Position of the entry.
        index: usize,
        /// Its key as given.
        key: String,
        /// The rule broken, naming the field.
        source: InvalidRequest,
    },
    /// Two inline states have the same key.
    #[error("limits[{index}]: key {key:?} is defined twice")]
    DuplicateKey {
        /// Position of the second entry.
        index: usize,
        /// The key.
        key: String,
    },
    /// Inline limits that break another rule of limits files.
    #[error("limits: {0}")]
    Invalid(InvalidLimits),
    /// The service could not apply a definition to the backend.
    #[error(transparent)]
    Start(Box<StartError>),
}

impl From<StartError> for LocalLimiterError {
    fn from(error: StartError) -> Self {
        LocalLimiterError::Start(Box::new(error))
    }
}

/// A [`Limiter`] backed by an in-process service.
#[derive(Debug, Clone)]
pub struct LocalLimiter {
    service: Arc<LimiterService>,
}

/// Checks inline states with the limits-file rules; errors name the entry as `limits[i]`.
fn validate_states(states: &[LimitState]) -> Result<(), LocalLimiterError> {
    validate_limit_states(states).map_err(|invalid| match invalid {
        InvalidLimits::Duplicate { index, key } => LocalLimiterError::DuplicateKey { index, key },
        InvalidLimits::Invalid { index, source } => LocalLimiterError::InvalidState {
            index,
            key: states
                .get(index)
                .map(|s| s.definition.key.clone())
                .unwrap_or_default(),
            source,
        },
        // Values, not text: nothing to parse, so only the two rules above can fail.
        other => LocalLimiterError::Invalid(other),
    })
}

impl LocalLimiter {
    /// A local limiter over an already running service.
    pub fn new(service: Arc<LimiterService>) -> Self {
        LocalLimiter { service }
    }

    /// Starts the memory backend and a service holding the limits of a limits file
    /// (SPEC §2; the file is only read). Must be called inside a running actix System.
    pub async fn from_limits_file(
        path: impl AsRef<Path>,
        clock: SharedClock,
    ) -> Result<Self, LocalLimiterError> {
        let states = read_limits_file(path.as_ref())?;
        Self::start(states, clock).await
    }

    /// Starts the memory backend and a service holding `states` (inline limits). Every state
    /// is validated first; a duplicate key or an invalid definition is an error naming the
    /// entry. Must be called inside a running actix System.
    pub async fn from_states(
        states: Vec<LimitState>,
        clock: SharedClock,
    ) -> Result<Self, LocalLimiterError> {
        validate_states(&states)?;
        Self::start(states, clock).await
    }

    async fn start(states: Vec<LimitState>, clock: SharedClock) -> Result<Self, LocalLimiterError> {
        let settings = ServiceSettings::default();
        let backend = MemoryBackend::start(clock, settings.retry);
        let service =
            LimiterService::start(backend, RegistrySource::InMemory, states, settings).await?;
        Ok(LocalLimiter { service })
    }

    /// The service behind this limiter (admin changes, usage).
    pub fn service(&self) -> &Arc<LimiterService> {
        &self.service
    }
}

#[async_trait]
impl Limiter for LocalLimiter {
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        self.service
            .reserve(request)
            .await
            .map_err(|e| LimiterError::Rejected(e.to_string()))
    }

    async fn complete(&self, request: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        self.service
            .complete(request)
            .await
            .map_err(|e| LimiterError::Rejected(e.to_string()))
    }

    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        Ok(self.service.reserve_batch(requests).await)
    }

    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        Ok(self.service.complete_batch(requests).await)
    }

    async fn definition(&self, key: &str) -> Result<Option<LimitDefinition>, LimiterError> {
        Ok(self.service.definition(key))
    }
}
