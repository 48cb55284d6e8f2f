//! What the TigerBeetle backend keeps in memory: each key's definition, deny streak and the
//! reservations this process made on it (for retry-after hints, SPEC §4, §9), and the
//! [`LeaseTable`] (what each lease reserved, so
//! that `complete` knows what to void or re-reserve, and so that a repeated reserve is
//! answered without a round trip). Nothing here is needed for safety: capacity is enforced
//! by TigerBeetle alone, and if this is lost (a restart) reservations simply expire.
//!
//! The book sits behind a mutex that is never held across an await.

use foldhash::{HashMap, HashMapExt};

use super::accounts::limit_id;
use super::transfers::{remaining_seconds, Take};
use crate::backend::{BackendError, Fault};
use crate::model::leases::{Hold, LeaseTable};
use crate::model::{
    DenyStreak, LeaseId, LimitDefinition, LimitKind, Requirement, Reservations, RetryPolicy,
};

/// One key as this process knows it.
#[derive(Debug)]
pub struct KeyEntry {
    /// The definition in force.
    pub definition: LimitDefinition,
    /// Consecutive denials, for table hints.
    pub streak: DenyStreak,
    /// The reservations this process made on the key, expiring when TigerBeetle's timeouts
    /// end (whole seconds from the reserve): exact hints when they explain a denial.
    pub reservations: Reservations,
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
    /// Each known key by the id of its limit account (to read a lease off the ledger).
    by_limit_account: HashMap<u128, String>,
    /// Hints and hold lengths.
    policy: RetryPolicy,
    /// Outcomes and holds of recent leases.
    pub leases: LeaseTable,
}

impl Book {
    /// An empty book remembering at most `max_leases` leases.
    pub fn new(max_leases: usize, policy: RetryPolicy) -> Self {
        Book {
            keys: HashMap::new(),
            by_limit_account: HashMap::new(),
            policy,
            leases: LeaseTable::new(max_leases),
        }
    }

    /// Creates or replaces a key's definition, keeping its deny streak.
    pub fn define(&mut self, definition: LimitDefinition) {
        match self.keys.get_mut(&definition.key) {
            Some(entry) => entry.definition = definition,
            None => {
                self.by_limit_account
                    .insert(limit_id(&definition.key), definition.key.clone());
                self.keys.insert(
                    definition.key.clone(),
                    KeyEntry {
                        definition,
                        streak: DenyStreak::default(),
                        reservations: Reservations::new(),
                    },
                );
            }
        }
    }

    /// The definition of a key, if this process knows it.
    pub fn definition(&self, key: &str) -> Option<&LimitDefinition> {
        self.keys.get(key).map(|e| &e.definition)
    }

    /// The key whose limit account is `account`, if this process knows it.
    pub fn key_of_limit_account(&self, account: u128) -> Option<&str> {
        self.by_limit_account.get(&account).map(String::as_str)
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
                        key: requirement.key.to_string(),
                    })?;
            let hold_ms = self.policy.hold_ms(definition);
            plan.longest_hold_ms = plan.longest_hold_ms.max(hold_ms);
            let timeout_seconds = remaining_seconds(hold_ms);
            plan.takes.push(Take {
                key: requirement.key.to_string(),
                amount: requirement.amount,
                timeout_seconds,
            });
            // What TigerBeetle enforces: the pending expires whole seconds after the reserve.
            plan.holds.push(Hold {
                key: requirement.key.as_ref().into(),
                amount: requirement.amount,
                kind: definition.kind,
                hold_ms: i64::from(timeout_seconds) * 1000,
                place: None,
                home: None,
            });
        }
        Ok(plan)
    }

    /// A reserve was allowed (now, or before: a replay answered `exists`): the keys'
    /// streaks decay and each take is recorded until its TigerBeetle timeout ends.
    pub fn on_allow(&mut self, lease: LeaseId, takes: &[Take], now_ms: i64) {
        for take in takes {
            if let Some(entry) = self.keys.get_mut(&take.key) {
                entry.streak.on_allow();
                entry.reservations.replace(
                    lease,
                    take.amount,
                    expiry_ms(now_ms, take.timeout_seconds),
                );
            }
        }
    }

    /// `amount` did not fit on `key` at `now_ms`: its hint, after which its streak grows.
    pub fn on_deny(&mut self, key: &str, amount: u64, now_ms: i64) -> u64 {
        let hint = self.hint(key, amount, now_ms);
        if let Some(entry) = self.keys.get_mut(key) {
            entry.streak.on_deny();
        }
        hint
    }

    /// The hint for `amount` on `key` at `now_ms` without changing its streak (a denied
    /// lease id retried). Rolling: exact when this process's own reservations explain the
    /// denial (they alone leave no room for `amount`), the table otherwise (reservations of
    /// other instances, or made before a restart, are not known here). Concurrency: the
    /// table, never past the earliest known hold's timeout.
    pub fn hint(&mut self, key: &str, amount: u64, now_ms: i64) -> u64 {
        let policy = self.policy;
        let Some(entry) = self.keys.get_mut(key) else {
            return policy.rolling.base_ms;
        };
        entry.reservations.expire(now_ms);
        let definition = &entry.definition;
        let streak = entry.streak.get();
        match definition.kind {
            LimitKind::Rolling => {
                match entry
                    .reservations
                    .wait_until_fits_ms(amount, definition.capacity, now_ms)
                {
                    Some(wait_ms) if wait_ms > 0 => {
                        policy.exact_hint_ms(LimitKind::Rolling, wait_ms)
                    }
                    _ => policy.hint_ms(definition, streak),
                }
            }
            LimitKind::Concurrency => {
                let earliest = entry
                    .reservations
                    .earliest_expiry_ms()
                    .map(|at| u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0));
                policy.concurrency_hint_ms(definition, streak, earliest)
            }
        }
    }

    /// A lease's hold on `key` was released (voided, or found expired).
    pub fn released(&mut self, lease: LeaseId, key: &str) {
        if let Some(entry) = self.keys.get_mut(key) {
            entry.reservations.remove(lease, None);
        }
    }

    /// A lease's reservation on `key` now holds `amount` until `timeout_seconds` from
    /// `now_ms` (a shrink re-reserved the actual; 0 = nothing left).
    pub fn replaced(
        &mut self,
        lease: LeaseId,
        key: &str,
        amount: u64,
        now_ms: i64,
        timeout_seconds: u32,
    ) {
        self.released(lease, key);
        if amount > 0 {
            self.extended(lease, key, amount, now_ms, timeout_seconds);
        }
    }

    /// A lease reserved `amount` more on `key` for `timeout_seconds` from `now_ms`, on top
    /// of what it holds (an overage, or the re-reservation after a shrink).
    pub fn extended(
        &mut self,
        lease: LeaseId,
        key: &str,
        amount: u64,
        now_ms: i64,
        timeout_seconds: u32,
    ) {
        if let Some(entry) = self.keys.get_mut(key) {
            entry
                .reservations
                .insert(lease, amount, expiry_ms(now_ms, timeout_seconds));
        }
    }
}

/// When a TigerBeetle timeout of `timeout_seconds` from `now_ms` ends.
fn expiry_ms(now_ms: i64, timeout_seconds: u32) -> i64 {
    now_ms.saturating_add(i64::from(timeout_seconds) * 1000)
}
