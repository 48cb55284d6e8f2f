//! The control plane of [`LimiterService`]: creating and changing limits (saved to the
//! registry before the backend is touched, so a failed change leaves no trace), reading them
//! with live usage, and applying pending decreases.

use futures::stream::{self, StreamExt, TryStreamExt};
use log::{info, warn};
use thiserror::Error;

use super::{save_blocking, LimiterService, RegistrySource};
use crate::backend::{Backend, BackendError};
use crate::definitions::StoreError;
use crate::model::{InvalidRequest, LimitDefinition, LimitInfo, LimitState, LimitStatus};
use crate::registry::RegistryError;

/// Most usage reads [`LimiterService::list`] has in flight at once.
pub const LIST_CONCURRENCY: usize = 32;

/// Why an admin change failed; nothing was changed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// The definition broke a rule.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The registry could not be saved.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The backend refused or failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The definitions shared with other instances could not be written.
    #[error("shared limit definitions: {0}")]
    Shared(StoreError),
}

impl LimiterService {
    /// Creates or updates a limit (SPEC §3 admin PUT, §4 capacity changes) and returns its
    /// status. The registry is saved first, then the backend updated (see `commit`), so a
    /// failed change changes nothing.
    pub async fn define(&self, definition: LimitDefinition) -> Result<LimitStatus, AdminError> {
        definition.validate()?;
        let _admin = self.admin_lock.lock().await;
        let key = definition.key.clone();
        let change = |previous: Option<&LimitState>| match previous {
            Some(existing) => Ok(existing.updated_with(definition.clone())?),
            None => Ok(LimitState::active(definition.clone())),
        };
        let next = match &self.shared {
            Some(_) => self.define_shared(&key, change).await?,
            None => {
                let previous = self.read_states().get(&key).cloned();
                let next = change(previous.as_ref())?;
                self.commit(previous, next.clone()).await?;
                next
            }
        };
        info!(
            "limit {} defined: {:?} capacity {} ({:?}{})",
            next.definition.key,
            next.definition.kind,
            next.definition.capacity,
            next.status,
            if next.status == LimitStatus::Decreasing {
                format!(" to {}", next.pending_decrease_to)
            } else {
                String::new()
            }
        );
        Ok(next.status)
    }

    /// Saves `next` in the registry, then applies it to the backend. A failed save changes
    /// nothing anywhere: the backend, which other instances may share, never holds a
    /// definition that could not be persisted (a new key leaves no actor or account behind).
    /// If the backend fails, the registry is put back to `previous`. Callers hold the admin
    /// lock.
    ///
    /// With shared definitions the store is written first instead, and is the commit point:
    /// once written, the change is in force on every instance, so a backend failure after it
    /// is logged and left to the capacity healing of the control tick.
    pub(super) async fn commit(
        &self,
        previous: Option<LimitState>,
        next: LimitState,
    ) -> Result<(), AdminError> {
        let key = next.definition.key.clone();
        if let Some(shared) = &self.shared {
            self.write_shared(shared, &next).await?;
            if let Err(e) = self.backend.define(&next).await {
                warn!(
                    "limit {key}: saved in {}, but applying it to the backend failed ({e}); \
                     the capacity check of the next control tick applies it",
                    shared.store.describe()
                );
            }
            self.set_state(key, next);
            return Ok(());
        }
        if let RegistrySource::File(registry) = &self.registry {
            save_blocking(registry.clone(), self.states_with(&key, Some(&next))).await?;
        }
        if let Err(e) = self.backend.define(&next).await {
            if let RegistrySource::File(registry) = &self.registry {
                let restored = self.states_with(&key, previous.as_ref());
                if let Err(undo) = save_blocking(registry.clone(), restored).await {
                    warn!(
                        "limit {key}: the backend refused the change and the registry could \
                         not be put back ({undo}); the next start applies the saved definition"
                    );
                }
            }
            return Err(e.into());
        }
        self.set_state(key, next);
        Ok(())
    }

    /// Every known state with `key` replaced by `state` (or left out), sorted by key: what
    /// the registry file holds after the change.
    fn states_with(&self, key: &str, state: Option<&LimitState>) -> Vec<LimitState> {
        let mut all: Vec<LimitState> = self
            .read_states()
            .values()
            .filter(|s| s.definition.key != key)
            .cloned()
            .collect();
        all.extend(state.cloned());
        all.sort_by(|a, b| a.definition.key.cmp(&b.definition.key));
        all
    }

    /// The definition in force of a key, or `None` for an unknown key (no backend call).
    pub fn definition(&self, key: &str) -> Option<LimitDefinition> {
        self.read_states().get(key).map(|s| s.definition.clone())
    }

    /// One limit with live usage, or `None` for an unknown key.
    pub async fn get(&self, key: &str) -> Result<Option<LimitInfo>, BackendError> {
        let Some(state) = self.read_states().get(key).cloned() else {
            return Ok(None);
        };
        let usage = self.backend.usage(key).await?;
        Ok(Some(LimitInfo { state, usage }))
    }

    /// Every limit with live usage, sorted by key. Up to [`LIST_CONCURRENCY`] usage reads
    /// are in flight at once: a backend answers many waiting reads in one go (the memory
    /// backend's actors drain their mailboxes), which costs far less than one round trip
    /// per key.
    pub async fn list(&self) -> Result<Vec<LimitInfo>, BackendError> {
        let mut states: Vec<LimitState> = self.read_states().values().cloned().collect();
        states.sort_by(|a, b| a.definition.key.cmp(&b.definition.key));
        stream::iter(states)
            .map(|state| async move {
                let usage = self.backend.usage(&state.definition.key).await?;
                Ok(LimitInfo { state, usage })
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Tries every pending decrease once; returns how many were applied. Paused while the
    /// backend is down: the keys stay decreasing until it answers again.
    pub async fn apply_pending_decreases(&self) -> usize {
        if self.backend.down().is_some() {
            return 0;
        }
        let pending: Vec<String> = self
            .read_states()
            .values()
            .filter(|s| s.status == LimitStatus::Decreasing)
            .map(|s| s.definition.key.clone())
            .collect();
        let mut applied = 0;
        for key in pending {
            let _admin = self.admin_lock.lock().await;
            // Re-read under the lock: a PUT may have replaced or cancelled the decrease.
            let Some(state) = self.read_states().get(&key).cloned() else {
                continue;
            };
            if state.status != LimitStatus::Decreasing {
                continue;
            }
            let target = state.pending_decrease_to;
            match self.backend.try_decrease(&key, target).await {
                Ok(true) => {
                    let next = state.decrease_applied();
                    match self.commit(Some(state.clone()), next).await {
                        Ok(()) => {
                            applied += 1;
                            info!("limit {key}: decrease to {target} applied");
                        }
                        Err(e) => warn!("limit {key}: decrease applied but not saved: {e}"),
                    }
                }
                Ok(false) => {}
                Err(e) => warn!("limit {key}: decrease not applied: {e}"),
            }
        }
        applied
    }
}

impl LimiterService {
    /// One control tick, run by the [`crate::actors::DecreaseApplier`]: follow definitions
    /// changed on other instances (shared definitions only), apply pending decreases, and
    /// heal capacity drift (at most once a second). Answers how many decreases were applied.
    /// Skipped while the backend is known to be down.
    pub async fn control_tick(&self) -> usize {
        if self.backend.down().is_some() {
            return 0;
        }
        self.follow_shared().await;
        let applied = self.apply_pending_decreases().await;
        self.heal_capacity().await;
        applied
    }
}

#[async_trait::async_trait]
impl crate::actors::PendingDecreases for LimiterService {
    async fn apply_pending_decreases(&self) -> usize {
        self.control_tick().await
    }
}
