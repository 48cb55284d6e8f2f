//! What the TigerBeetle backend keeps in memory: each key's definition and deny streak
//! (for retry-after hints, SPEC §4), and the [`LeaseTable`] (what each lease reserved, so
//! that `complete` knows what to void or re-reserve, and so that a repeated reserve is
//! answered without a round trip). Nothing here is needed for safety: capacity is enforced
//! by TigerBeetle alone, and if this is lost (a restart) reservations simply expire.
//!
//! The book sits behind a mutex that is never held across an await.

use std::collections::HashMap;

use super::transfers::{hold_seconds, Take};
use crate::backend::{BackendError, Fault};
use crate::model::leases::{Hold, LeaseTable};
use crate::model::{DenyStreak, LimitDefinition, Requirement, RetryPolicy};

/// One key as this process knows it.
#[derive(Debug)]
pub struct KeyEntry {
    /// The definition in force.
    pub definition: LimitDefinition,
    /// Consecutive denials, for hints.
    pub streak: DenyStreak,
}

/// A reserve, planned: the chain's takes, the holds to remember, the longest hold.
#[derive(Debug)]
pub struct Plan {
    /// One take per requirement, in order.
    pub takes: Vec<Take>,
    /// The same as lease-table holds.
    pub holds: Vec<Hold>,
    /// The longest hold among the keys, in ms (how long the lease is remembered).
    pub longest_hold_ms: i64,
}

/// Keys and leases.
#[derive(Debug)]
pub struct Book {
    keys: HashMap<String, KeyEntry>,
    /// Outcomes and holds of recent leases.
    pub leases: LeaseTable,
}

impl Book {
    /// An empty book remembering at most `max_leases` leases.
    pub fn new(max_leases: usize) -> Self {
        Book {
            keys: HashMap::new(),
            leases: LeaseTable::new(max_leases),
        }
    }

    /// Creates or replaces a key's definition, keeping its deny streak.
    pub fn define(&mut self, definition: LimitDefinition) {
        match self.keys.get_mut(&definition.key) {
            Some(entry) => entry.definition = definition,
            None => {
                self.keys.insert(
                    definition.key.clone(),
                    KeyEntry {
                        definition,
                        streak: DenyStreak::default(),
                    },
                );
            }
        }
    }

    /// The definition of a key, if this process knows it.
    pub fn definition(&self, key: &str) -> Option<&LimitDefinition> {
        self.keys.get(key).map(|e| &e.definition)
    }

    /// Plans a reserve of `requirements`; every key must be defined here.
    pub fn plan(&self, requirements: &[Requirement]) -> Result<Plan, BackendError> {
        let mut plan = Plan {
            takes: Vec::with_capacity(requirements.len()),
            holds: Vec::with_capacity(requirements.len()),
            longest_hold_ms: 0,
        };
        for requirement in requirements {
            let definition =
                self.definition(&requirement.key)
                    .ok_or_else(|| Fault::UnknownKey {
                        backend: "TigerBeetle",
                        key: requirement.key.clone(),
                    })?;
            plan.longest_hold_ms = plan.longest_hold_ms.max(definition.hold_ms());
            plan.takes.push(Take {
                key: requirement.key.clone(),
                amount: requirement.amount,
                timeout_seconds: hold_seconds(definition),
            });
            plan.holds.push(Hold {
                key: requirement.key.clone(),
                amount: requirement.amount,
                kind: definition.kind,
            });
        }
        Ok(plan)
    }

    /// The longest hold among the keys of `holds` (as defined now), in ms.
    pub fn longest_hold_ms(&self, holds: &[Hold]) -> i64 {
        holds
            .iter()
            .filter_map(|h| self.definition(&h.key))
            .map(LimitDefinition::hold_ms)
            .max()
            .unwrap_or(0)
    }

    /// A reserve including these keys was allowed: their streaks decay.
    pub fn on_allow(&mut self, holds: &[Hold]) {
        for hold in holds {
            if let Some(entry) = self.keys.get_mut(&hold.key) {
                entry.streak.on_allow();
            }
        }
    }

    /// `key` did not fit: its hint, after which its streak grows.
    pub fn on_deny(&mut self, key: &str, policy: &RetryPolicy) -> u64 {
        match self.keys.get_mut(key) {
            Some(entry) => {
                let hint = policy.hint_ms(&entry.definition, entry.streak.get());
                entry.streak.on_deny();
                hint
            }
            None => policy.rolling.base_ms,
        }
    }

    /// The hint for `key` without changing its streak (a denied lease id retried).
    pub fn hint(&self, key: &str, policy: &RetryPolicy) -> u64 {
        match self.keys.get(key) {
            Some(entry) => policy.hint_ms(&entry.definition, entry.streak.get()),
            None => policy.rolling.base_ms,
        }
    }
}
