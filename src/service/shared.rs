//! Definitions shared through the backend (TigerBeetle: the cluster; see
//! [`crate::definitions`]), and capacity healing.
//!
//! - At start the service reads every key from the store; keys of the registry file or the
//!   limits file that the store lacks are written to it (so a first start, or an upgrade from
//!   per-instance registry files, loses nothing), and the store's version wins for the rest.
//! - An admin change is written to the store first (the commit point every instance sees),
//!   then applied to the backend. A version another instance wrote first makes the change
//!   start over from that version.
//! - Every control tick follows the store's changes (so a change made anywhere is in force
//!   here one tick later) and heals capacity: the backend's held capacity is compared with
//!   the definitions, and drift left by a failure (a funding that landed for a change that
//!   was never saved, or a change saved but never funded) is funded or given back. Held
//!   capacity above the definition that is in use becomes a pending decrease, so the key stops
//!   taking reserves until it is given back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use super::admin::AdminError;
use super::LimiterService;
use crate::backend::Backend;
use crate::definitions::{DefinitionStore, StoreError, Versioned};
use crate::model::throttle::LogThrottle;
use crate::model::{LimitState, LimitStatus};

/// Attempts of one admin change when other instances keep writing the same key first.
const CONFLICT_ATTEMPTS: usize = 5;
/// How often held capacity is compared with the definitions at most.
const HEAL_INTERVAL: Duration = Duration::from_secs(1);

/// At most one warning a minute about versions the backend refused.
const REFUSED_LOG_INTERVAL_MS: i64 = 60_000;

/// What [`LimiterService`] keeps about the shared store.
#[derive(Debug)]
pub(super) struct SharedDefinitions {
    pub(super) store: Arc<dyn DefinitionStore>,
    /// The newest version of each key known here.
    versions: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// How far the store's changes have been followed.
    cursor: std::sync::Mutex<crate::definitions::Cursor>,
    /// Versions the backend refused are retried every control tick; warned about at most
    /// once a minute.
    refused_log: std::sync::Mutex<LogThrottle>,
}

impl SharedDefinitions {
    fn version(&self, key: &str) -> u64 {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn set_version(&self, key: &str, version: u64) {
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        let known = versions.entry(key.to_string()).or_insert(0);
        *known = (*known).max(version);
    }
}

/// Reads the store at start and adds the `local` states (registry file, limits file) it
/// lacks; answers the states in force and what the service keeps about the store.
pub(super) async fn load(
    store: Arc<dyn DefinitionStore>,
    local: Vec<LimitState>,
) -> Result<(Vec<LimitState>, SharedDefinitions), StoreError> {
    let changes = store.changes_since(Default::default()).await?;
    for unreadable in &changes.unreadable {
        error!("{}: {unreadable}; that record is ignored", store.describe());
    }
    let mut versions = std::collections::HashMap::new();
    let mut states = Vec::with_capacity(changes.states.len() + local.len());
    for Versioned { version, state } in changes.states {
        versions.insert(state.definition.key.clone(), version);
        states.push(state);
    }
    let found = states.len();
    let mut added = 0;
    for state in local {
        let key = state.definition.key.clone();
        if versions.contains_key(&key) {
            continue;
        }
        let stored = match store.write(1, &state).await {
            Ok(()) => {
                added += 1;
                Versioned { version: 1, state }
            }
            // Another instance added it at the same moment: its version is in force.
            Err(StoreError::Conflict { .. }) => match store.latest(&key).await? {
                Some(latest) => latest,
                None => return Err(StoreError::Conflict { key, version: 1 }),
            },
            Err(e) => return Err(e),
        };
        versions.insert(key, stored.version);
        states.push(stored.state);
    }
    info!(
        "definitions live in {}: {found} limit(s) found there, {added} added from this \
         instance's registry or limits file",
        store.describe()
    );
    let shared = SharedDefinitions {
        store,
        versions: std::sync::Mutex::new(versions),
        cursor: std::sync::Mutex::new(changes.cursor),
        refused_log: std::sync::Mutex::new(LogThrottle::new(REFUSED_LOG_INTERVAL_MS)),
    };
    Ok((states, shared))
}

impl LimiterService {
    /// Writes `next` to the shared store as the key's next version. On a conflict the
    /// newest version is taken in here (so the caller can start over from it).
    pub(super) async fn write_shared(
        &self,
        shared: &SharedDefinitions,
        next: &LimitState,
    ) -> Result<(), AdminError> {
        let key = &next.definition.key;
        let version = shared.version(key) + 1;
        match shared.store.write(version, next).await {
            Ok(()) => {
                shared.set_version(key, version);
                Ok(())
            }
            Err(e) => {
                if matches!(e, StoreError::Conflict { .. }) {
                    self.refresh_key(shared, key).await;
                }
                Err(AdminError::Shared(e))
            }
        }
    }

    /// Reads the newest version of `key` from the store and applies it here if it is newer
    /// than the one known; errors are logged (the next tick tries again).
    pub(super) async fn refresh_key(&self, shared: &SharedDefinitions, key: &str) {
        match shared.store.latest(key).await {
            Ok(Some(latest)) => {
                self.take_in(shared, latest).await;
            }
            Ok(None) => {}
            Err(e) => warn!(
                "limit {key}: cannot read it from {}: {e}",
                shared.store.describe()
            ),
        }
    }

    /// Applies a version read from the store to the backend and the local states, unless a
    /// newer one is known already. `false` if the backend refused it.
    async fn take_in(&self, shared: &SharedDefinitions, latest: Versioned) -> bool {
        let key = latest.state.definition.key.clone();
        if latest.version <= shared.version(&key) {
            return true;
        }
        if let Err(e) = self.backend.define(&latest.state).await {
            if let Some(held_back) = self.log_due(&shared.refused_log) {
                warn!(
                    "limit {key}: version {} from {} not applied yet: {e} (retried every \
                     control tick; {held_back} more refusal(s) since the last warning, which \
                     repeats at most once a minute)",
                    latest.version,
                    shared.store.describe()
                );
            }
            return false;
        }
        info!(
            "limit {key}: version {} from {}: {:?} capacity {} ({:?})",
            latest.version,
            shared.store.describe(),
            latest.state.definition.kind,
            latest.state.definition.capacity,
            latest.state.status
        );
        shared.set_version(&key, latest.version);
        self.set_state(key, latest.state);
        true
    }

    /// Runs `change` (from the state known, or `None`) and writes its result; a version
    /// written first by another instance makes it start over from that version.
    pub(super) async fn define_shared(
        &self,
        key: &str,
        change: impl Fn(Option<&LimitState>) -> Result<LimitState, AdminError>,
    ) -> Result<LimitState, AdminError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let previous = self.read_states().get(key).cloned();
            let next = change(previous.as_ref())?;
            match self.commit(previous, next.clone()).await {
                Err(AdminError::Shared(StoreError::Conflict { .. }))
                    if attempt < CONFLICT_ATTEMPTS =>
                {
                    continue
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(next),
            }
        }
    }

    /// Follows the store's changes since the last call; answers how many keys changed here.
    /// The cursor only moves on when every change was applied, so a refused one is retried.
    pub(super) async fn follow_shared(&self) -> usize {
        let Some(shared) = &self.shared else {
            return 0;
        };
        let _admin = self.admin_lock.lock().await;
        let cursor = *shared.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let changes = match shared.store.changes_since(cursor).await {
            Ok(changes) => changes,
            Err(e) => {
                warn!(
                    "cannot read limit changes from {}: {e}",
                    shared.store.describe()
                );
                return 0;
            }
        };
        for unreadable in &changes.unreadable {
            error!(
                "{}: {unreadable}; that record is ignored",
                shared.store.describe()
            );
        }
        let mut changed = 0;
        let mut all_applied = true;
        for latest in changes.states {
            let newer = latest.version > shared.version(&latest.state.definition.key);
            if self.take_in(shared, latest).await {
                changed += usize::from(newer);
            } else {
                all_applied = false;
            }
        }
        if all_applied {
            *shared.cursor.lock().unwrap_or_else(|p| p.into_inner()) = changes.cursor;
        }
        changed
    }

    /// Compares the capacity the backend holds with every definition (at most once per
    /// [`HEAL_INTERVAL`]) and repairs drift; answers how many keys were repaired.
    pub(super) async fn heal_capacity(&self) -> usize {
        {
            let mut last = self.last_heal.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < HEAL_INTERVAL) {
                return 0;
            }
            *last = Some(Instant::now());
        }
        let keys: Vec<String> = self.read_states().keys().cloned().collect();
        let held = match self.backend.held_capacities(&keys).await {
            Ok(Some(held)) => held,
            Ok(None) => return 0,
            Err(e) => {
                warn!("cannot compare held capacity with the definitions: {e}");
                return 0;
            }
        };
        let mut repaired = 0;
        for (key, held) in keys.iter().zip(held) {
            let drifted = self
                .read_states()
                .get(key)
                .is_some_and(|state| drift(state, held).is_some());
            if drifted && self.heal_key(key).await {
                repaired += 1;
            }
        }
        repaired
    }

    /// Repairs one key's capacity under the admin lock, after reading its newest version
    /// (another instance's change may explain the drift).
    async fn heal_key(&self, key: &str) -> bool {
        let _admin = self.admin_lock.lock().await;
        if let Some(shared) = &self.shared {
            self.refresh_key(shared, key).await;
        }
        let Some(state) = self.read_states().get(key).cloned() else {
            return false;
        };
        let held = match self.backend.held_capacities(&[key.to_string()]).await {
            Ok(Some(held)) => held.first().copied().unwrap_or(0),
            Ok(None) => return false,
            Err(e) => {
                warn!("limit {key}: cannot read its held capacity: {e}");
                return false;
            }
        };
        let defined = state.definition.capacity;
        match drift(&state, held) {
            None => false,
            Some(Drift::Short) => match self.backend.define(&state).await {
                Ok(()) => {
                    warn!("limit {key}: the backend held {held}, below the defined {defined}; funded it back");
                    true
                }
                Err(e) => {
                    warn!("limit {key}: holds {held}, below the defined {defined}; funding failed: {e}");
                    false
                }
            },
            Some(Drift::Excess { to }) => match self.backend.try_decrease(key, to).await {
                Ok(true) => {
                    warn!("limit {key}: the backend held {held}, above the defined {to}; gave the excess back");
                    true
                }
                Ok(false) if state.status == LimitStatus::Active => {
                    // In use: the key stops taking reserves until the excess is free.
                    let pending = LimitState {
                        definition: crate::model::LimitDefinition {
                            capacity: held,
                            ..state.definition.clone()
                        },
                        status: LimitStatus::Decreasing,
                        pending_decrease_to: defined,
                    };
                    match self.commit(Some(state), pending).await {
                        Ok(()) => {
                            warn!("limit {key}: the backend holds {held}, above the defined {defined}, and it is in use; decreasing to {defined}");
                            true
                        }
                        Err(e) => {
                            warn!("limit {key}: holds {held} above the defined {defined}; cannot start its decrease: {e}");
                            false
                        }
                    }
                }
                Ok(false) => false,
                Err(e) => {
                    warn!("limit {key}: holds {held} above the defined {to}; giving it back failed: {e}");
                    false
                }
            },
        }
    }
}

/// How held capacity differs from what a state allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drift {
    /// Less than the capacity in force (or, while decreasing, less than the target).
    Short,
    /// More than allowed: give back down to `to`.
    Excess {
        /// The capacity to go down to.
        to: u64,
    },
}

/// Active: held must equal the capacity. Decreasing: anything from the target up to the
/// capacity in force is a decrease on its way.
fn drift(state: &LimitState, held: u64) -> Option<Drift> {
    let capacity = state.definition.capacity;
    let low = match state.status {
        LimitStatus::Active => capacity,
        LimitStatus::Decreasing => state.pending_decrease_to,
    };
    if held < low {
        Some(Drift::Short)
    } else if held > capacity {
        Some(Drift::Excess { to: capacity })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LimitDefinition;

    #[test]
    fn drift_follows_the_status() {
        let active = LimitState::active(LimitDefinition::rolling("k", 100, 60));
        assert_eq!(drift(&active, 100), None);
        assert_eq!(drift(&active, 90), Some(Drift::Short));
        assert_eq!(drift(&active, 150), Some(Drift::Excess { to: 100 }));
        let decreasing = active
            .updated_with(LimitDefinition::rolling("k", 40, 60))
            .unwrap();
        assert_eq!(drift(&decreasing, 100), None);
        assert_eq!(drift(&decreasing, 40), None);
        assert_eq!(drift(&decreasing, 30), Some(Drift::Short));
        assert_eq!(drift(&decreasing, 120), Some(Drift::Excess { to: 100 }));
    }
}
