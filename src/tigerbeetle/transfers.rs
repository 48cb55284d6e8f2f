//! Transfers of SPEC §5: their deterministic labels, how they are built, and what a
//! chain's failures mean.
//!
//! Every transfer id is [`id_for_label`] of a label naming exactly one intent, so a retry
//! after an unknown outcome (timeout, lost reply, another instance doing the same thing)
//! resubmits the *same* id and TigerBeetle answers `exists` instead of applying it twice.
//!
//! | label | transfer |
//! | --- | --- |
//! | `xfer:reserve:<lease>:<key>` | pending limit → operator, timeout = window / hold timeout |
//! | `xfer:void:<lease>:<key>` | voids that pending (concurrency release, rolling shrink) |
//! | `xfer:rereserve:<lease>:<key>` | pending for the rest of the window: the actual after a shrink, or the overage |
//! | `xfer:debt:<lease>:<key>` | posted debt → operator: an overage that did not fit |
//! | `xfer:fund:<key>:<cp>:<dp>:<to>` | posted operator → limit: capacity up to `to` |
//! | `xfer:decrease:<key>:<cp>:<dp>:<to>` | posts a probe pending limit → operator: capacity down to `to` |
//!
//! `<cp>:<dp>` are the limit account's `credits_posted` and `debits_posted` when the change
//! was decided. Only capacity changes move them, and each change strictly increases one of
//! them, so the pair names one point in the key's capacity history. Consequences:
//! - two `ratelimiterd` instances (or a restart racing a retry) that see the same history and
//!   want the same capacity compute the same id: the change is applied once, the others get
//!   `exists`;
//! - going back to a capacity seen before (100 → 150 → 100 → 150) yields new ids, because
//!   the history moved on (an id without it would answer `exists` and silently fund nothing);
//! - the labels read from the right, so keys may contain `:` and digits.
//!
//! A decrease must be retried until enough capacity is free, but a transfer id that failed
//! with `exceeds_credits` is burnt for ever (`id_already_failed`). So the decrease is a
//! linked chain: a probe pending limit → operator with a fresh random id, then a post of that
//! probe under the deterministic label. When capacity is short only the probe fails (its
//! random id is burnt, the post merely gets `linked_event_failed`, which burns nothing);
//! when it fits the probe is posted at once. A second instance posting the same decrease
//! gets `exists_with_different_pending_id` on the post: the decrease was already applied.

use tigerbeetle_unofficial::error::CreateTransferErrorKind as Kind;
use tigerbeetle_unofficial::{transfer, Transfer};

use super::accounts::{debt_id, limit_id, operator_id, LimitBalance, CODE, LEDGER};
use super::ids::id_for_label;
use crate::model::LeaseId;

/// Failures of one work item: (index of the event within the item, result code).
pub type Failures = Vec<(usize, Kind)>;

/// Label of a lease's reservation on a key.
pub fn reserve_label(lease: LeaseId, key: &str) -> String {
    format!("xfer:reserve:{lease}:{key}")
}

/// Label of the void of that reservation.
pub fn void_label(lease: LeaseId, key: &str) -> String {
    format!("xfer:void:{lease}:{key}")
}

/// Label of the re-reservation after a shrink, or of the overage reservation.
pub fn rereserve_label(lease: LeaseId, key: &str) -> String {
    format!("xfer:rereserve:{lease}:{key}")
}

/// Label of the debt transfer of a lease's overage.
pub fn debt_label(lease: LeaseId, key: &str) -> String {
    format!("xfer:debt:{lease}:{key}")
}

/// Label of the funding that takes `key` from `balance` to capacity `to`.
pub fn fund_label(key: &str, balance: &LimitBalance, to: u128) -> String {
    format!(
        "xfer:fund:{key}:{}:{}:{to}",
        balance.credits_posted, balance.debits_posted
    )
}

/// Label of the decrease that takes `key` from `balance` to capacity `to`.
pub fn decrease_label(key: &str, balance: &LimitBalance, to: u128) -> String {
    format!(
        "xfer:decrease:{key}:{}:{}:{to}",
        balance.credits_posted, balance.debits_posted
    )
}

/// A remaining time as a TigerBeetle timeout: whole seconds rounded UP (never under-count)
/// and at least one second.
pub fn remaining_seconds(remaining_ms: i64) -> u32 {
    let ms = u64::try_from(remaining_ms.max(1)).unwrap_or(1);
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
}

/// Links every event of a chain to the next; the last one closes the chain.
pub fn link(chain: &mut [Transfer]) {
    let last = chain.len().saturating_sub(1);
    for (i, event) in chain.iter_mut().enumerate() {
        let mut flags = event.flags();
        flags.set(transfer::Flags::LINKED, i < last);
        event.set_flags(flags);
    }
}

fn base(label: &str) -> Transfer {
    Transfer::new(id_for_label(label))
        .with_ledger(LEDGER)
        .with_code(CODE)
}

/// A pending limit → operator transfer of `amount` that expires after `timeout_seconds`.
pub fn pending(
    label: &str,
    lease: LeaseId,
    key: &str,
    amount: u64,
    timeout_seconds: u32,
) -> Transfer {
    base(label)
        .with_debit_account_id(limit_id(key))
        .with_credit_account_id(operator_id())
        .with_amount(u128::from(amount))
        .with_timeout(timeout_seconds)
        .with_user_data_128(u128::from(lease))
        .with_flags(transfer::Flags::PENDING)
}

/// One requirement of a reserve: key, amount, and how long the hold lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    /// The limit key.
    pub key: String,
    /// Units to hold.
    pub amount: u64,
    /// Hold length in seconds (window or timeout).
    pub timeout_seconds: u32,
}

/// The linked chain of pending transfers that makes one reserve all-or-nothing.
pub fn reserve_chain(lease: LeaseId, takes: &[Take]) -> Vec<Transfer> {
    let mut chain: Vec<Transfer> = takes
        .iter()
        .map(|t| {
            pending(
                &reserve_label(lease, &t.key),
                lease,
                &t.key,
                t.amount,
                t.timeout_seconds,
            )
        })
        .collect();
    link(&mut chain);
    chain
}

/// Voids a lease's reservation on `key` (the whole pending amount).
pub fn void(lease: LeaseId, key: &str) -> Transfer {
    Transfer::new(id_for_label(&void_label(lease, key)))
        .with_pending_id(id_for_label(&reserve_label(lease, key)))
        .with_user_data_128(u128::from(lease))
        .with_flags(transfer::Flags::VOID_PENDING_TRANSFER)
}

/// Shrinks a rolling reservation to `actual`: void it and, atomically in the same chain,
/// reserve `actual` again until the original window ends (`remaining_ms` from now).
pub fn shrink_chain(lease: LeaseId, key: &str, actual: u64, remaining_ms: i64) -> Vec<Transfer> {
    let mut chain = vec![void(lease, key)];
    if actual > 0 {
        chain.push(pending(
            &rereserve_label(lease, key),
            lease,
            key,
            actual,
            remaining_seconds(remaining_ms),
        ));
    }
    link(&mut chain);
    chain
}

/// Reserves an overage for the rest of the window (at least one second).
pub fn overage(lease: LeaseId, key: &str, amount: u64, remaining_ms: i64) -> Transfer {
    pending(
        &rereserve_label(lease, key),
        lease,
        key,
        amount,
        remaining_seconds(remaining_ms.max(1000)),
    )
}

/// Records an overage that did not fit as debt: posted debt → operator.
pub fn debt(lease: LeaseId, key: &str, amount: u64) -> Transfer {
    base(&debt_label(lease, key))
        .with_debit_account_id(debt_id(key))
        .with_credit_account_id(operator_id())
        .with_amount(u128::from(amount))
        .with_user_data_128(u128::from(lease))
}

/// Funds `key` from `balance` up to capacity `to` (`to` above the current capacity).
pub fn fund(key: &str, balance: &LimitBalance, to: u128) -> Transfer {
    base(&fund_label(key, balance, to))
        .with_debit_account_id(operator_id())
        .with_credit_account_id(limit_id(key))
        .with_amount(to.saturating_sub(balance.capacity()))
}

/// The decrease chain of `key` from `balance` down to capacity `to` (see the module comment).
pub fn decrease_chain(key: &str, balance: &LimitBalance, to: u128) -> Vec<Transfer> {
    let probe = Transfer::new(fresh_id())
        .with_ledger(LEDGER)
        .with_code(CODE)
        .with_debit_account_id(limit_id(key))
        .with_credit_account_id(operator_id())
        .with_amount(balance.capacity().saturating_sub(to))
        .with_flags(transfer::Flags::PENDING);
    let post = Transfer::new(id_for_label(&decrease_label(key, balance, to)))
        .with_pending_id(probe.id())
        .with_amount(u128::MAX)
        .with_flags(transfer::Flags::POST_PENDING_TRANSFER);
    let mut chain = vec![probe, post];
    link(&mut chain);
    chain
}

/// A fresh time-based id that is never 0 or `u128::MAX`.
fn fresh_id() -> u128 {
    loop {
        let id = tigerbeetle_unofficial::id();
        if id != 0 && id != u128::MAX {
            return id;
        }
    }
}

/// What TigerBeetle made of one chain.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    /// Every event was applied now.
    Applied,
    /// The chain had been applied before (`exists` or `exists_with_different_*`).
    AlreadyApplied,
    /// The chain was not applied; `index` is the event that caused it.
    Failed {
        /// Position of the failing event in the chain.
        index: usize,
        /// Its result code.
        kind: Kind,
    },
}

/// Whether a result code says the transfer id is already taken by an earlier transfer.
pub fn is_exists(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Exists
            | Kind::ExistsWithDifferentFlags
            | Kind::ExistsWithDifferentDebitAccountId
            | Kind::ExistsWithDifferentCreditAccountId
            | Kind::ExistsWithDifferentAmount
            | Kind::ExistsWithDifferentPendingId
            | Kind::ExistsWithDifferentUserData128
            | Kind::ExistsWithDifferentUserData64
            | Kind::ExistsWithDifferentUserData32
            | Kind::ExistsWithDifferentTimeout
            | Kind::ExistsWithDifferentCode
            | Kind::ExistsWithDifferentLedger
    )
}

/// The verdict on one chain from its failures. In a failed chain only the event that broke
/// it carries its own code; the others say `linked_event_failed`.
pub fn verdict(failures: &[(usize, Kind)]) -> Verdict {
    let Some(&(index, kind)) = failures
        .iter()
        .find(|(_, k)| !matches!(k, Kind::LinkedEventFailed))
        .or(failures.first())
    else {
        return Verdict::Applied;
    };
    if is_exists(kind) {
        Verdict::AlreadyApplied
    } else {
        Verdict::Failed { index, kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_rounds_up_to_whole_seconds() {
        assert_eq!(remaining_seconds(1), 1);
        assert_eq!(remaining_seconds(1000), 1);
        assert_eq!(remaining_seconds(1001), 2);
        assert_eq!(remaining_seconds(59_999), 60);
        assert_eq!(remaining_seconds(-5), 1);
    }

    #[test]
    fn reserve_chain_is_linked_except_the_last() {
        let lease = LeaseId::new();
        let takes: Vec<Take> = ["a", "b", "c"]
            .iter()
            .map(|k| Take {
                key: (*k).into(),
                amount: 2,
                timeout_seconds: 60,
            })
            .collect();
        let chain = reserve_chain(lease, &takes);
        let linked: Vec<bool> = chain
            .iter()
            .map(|t| t.flags().contains(transfer::Flags::LINKED))
            .collect();
        assert_eq!(linked, [true, true, false]);
        assert!(chain
            .iter()
            .all(|t| t.flags().contains(transfer::Flags::PENDING) && t.timeout() == 60));
        assert_eq!(
            chain[1].id(),
            id_for_label(&format!("xfer:reserve:{lease}:b"))
        );
        assert_eq!(chain[1].debit_account_id(), limit_id("b"));
        assert_eq!(chain[1].credit_account_id(), operator_id());
    }

    #[test]
    fn history_makes_capacity_change_labels_unique() {
        let before = LimitBalance {
            credits_posted: 100,
            debits_posted: 0,
            debits_pending: 0,
        };
        let after_decrease = LimitBalance {
            credits_posted: 150,
            debits_posted: 50,
            debits_pending: 0,
        };
        assert_eq!(fund_label("k", &before, 150), "xfer:fund:k:100:0:150");
        assert_ne!(
            fund_label("k", &before, 150),
            fund_label("k", &after_decrease, 150)
        );
        assert_eq!(fund("k", &after_decrease, 150).amount(), 50);
    }

    #[test]
    fn verdict_finds_the_cause() {
        assert!(matches!(verdict(&[]), Verdict::Applied));
        assert!(matches!(
            verdict(&[(0, Kind::LinkedEventFailed), (1, Kind::ExceedsCredits)]),
            Verdict::Failed {
                index: 1,
                kind: Kind::ExceedsCredits
            }
        ));
        assert!(matches!(
            verdict(&[(0, Kind::Exists), (1, Kind::LinkedEventFailed)]),
            Verdict::AlreadyApplied
        ));
    }

    #[test]
    fn shrink_to_zero_is_a_plain_void() {
        let chain = shrink_chain(LeaseId::new(), "k", 0, 5000);
        assert_eq!(chain.len(), 1);
        assert!(!chain[0].flags().contains(transfer::Flags::LINKED));
        let chain = shrink_chain(LeaseId::new(), "k", 3, 5000);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].timeout(), 5);
        assert_eq!(chain[1].amount(), 3);
    }
}
