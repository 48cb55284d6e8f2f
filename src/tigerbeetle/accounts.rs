//! The accounts of SPEC §5 and what their balances mean.
//!
//! - `acct:operator`: the source and sink of all capacity; no balance constraint.
//! - `acct:limit:<key>`: `debits_must_not_exceed_credits`. Capacity is what the operator
//!   funded into it (`credits_posted − debits_posted`: fundings credit it, applied decreases
//!   debit it); reservations are pending debits, so TigerBeetle itself refuses a reserve that
//!   does not fit (`debits_pending + debits_posted + amount ≤ credits_posted`).
//! - `acct:debt:<key>` (keys with `overage = debt`): each overage that did not fit is a
//!   posted debt → operator transfer, so the key's debt is `debits_posted − credits_posted`.
//!
//! Every account lives on ledger 1 with code 1; ids come from [`id_for_label`].

use tigerbeetle_unofficial::{account, Account};

use super::ids::id_for_label;
use crate::model::Usage;

/// The one ledger every account and transfer uses.
pub const LEDGER: u32 = 1;
/// The one account and transfer code.
pub const CODE: u16 = 1;

/// Id of `acct:operator` (hashed once: every reserve's transfers credit it).
pub fn operator_id() -> u128 {
    static OPERATOR: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *OPERATOR.get_or_init(|| id_for_label("acct:operator"))
}

/// Id of `acct:limit:<key>`.
pub fn limit_id(key: &str) -> u128 {
    id_for_label(&format!("acct:limit:{key}"))
}

/// Id of `acct:debt:<key>`.
pub fn debt_id(key: &str) -> u128 {
    id_for_label(&format!("acct:debt:{key}"))
}

/// The operator account.
pub fn operator_account() -> Account {
    Account::new(operator_id(), LEDGER, CODE)
}

/// The limit account of `key`: it can never spend more than it was funded.
pub fn limit_account(key: &str) -> Account {
    Account::new(limit_id(key), LEDGER, CODE)
        .with_flags(account::Flags::DEBITS_MUST_NOT_EXCEED_CREDITS)
}

/// The debt account of `key`.
pub fn debt_account(key: &str) -> Account {
    Account::new(debt_id(key), LEDGER, CODE)
}

/// The balances of a limit account that the backend reasons about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitBalance {
    /// Total funded by the operator (fundings).
    pub credits_posted: u128,
    /// Total given back to the operator (applied decreases).
    pub debits_posted: u128,
    /// Sum of live reservations and holds.
    pub debits_pending: u128,
}

impl LimitBalance {
    /// The balance of an account as TigerBeetle reports it.
    pub fn of(account: &Account) -> Self {
        LimitBalance {
            credits_posted: account.credits_posted(),
            debits_posted: account.debits_posted(),
            debits_pending: account.debits_pending(),
        }
    }

    /// Capacity held in TigerBeetle: funded minus given back.
    pub fn capacity(&self) -> u128 {
        self.credits_posted.saturating_sub(self.debits_posted)
    }

    /// Capacity not held by any reservation.
    pub fn available(&self) -> u128 {
        self.capacity().saturating_sub(self.debits_pending)
    }

    /// Live usage, with the debt read from the debt account (if any).
    pub fn usage(&self, debt: Option<&Account>) -> Usage {
        let debt = debt
            .map(|d| d.debits_posted().saturating_sub(d.credits_posted()))
            .unwrap_or(0);
        Usage {
            in_use: saturate(self.debits_pending),
            available: saturate(self.available()),
            debt: saturate(debt),
        }
    }
}

/// A u128 balance as a u64 figure (balances of u64 capacities never exceed it).
fn saturate(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_label_scheme() {
        assert_eq!(operator_id(), id_for_label("acct:operator"));
        assert_eq!(limit_id("k"), id_for_label("acct:limit:k"));
        assert_eq!(debt_id("k"), id_for_label("acct:debt:k"));
        assert_ne!(limit_id("k"), debt_id("k"));
    }

    #[test]
    fn balance_arithmetic() {
        let b = LimitBalance {
            credits_posted: 150,
            debits_posted: 50,
            debits_pending: 30,
        };
        assert_eq!(b.capacity(), 100);
        assert_eq!(b.available(), 70);
        let u = b.usage(None);
        assert_eq!((u.in_use, u.available, u.debt), (30, 70, 0));
    }
}
