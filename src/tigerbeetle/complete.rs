//! `complete` on TigerBeetle (SPEC §4 "Complete", §5), on any instance.
//!
//! What the lease holds comes from one of two places, then one planning function decides:
//! - reserved here: the lease table (no round trip), with each hold's length as in force at
//!   reserve time;
//! - reserved by another instance (or forgotten here): the ledger, read by the crate-internal
//!   `ledger_lease` module (one `query_transfers` by the lease id in `user_data_128`). A
//!   lease the ledger does not know (never reserved, denied, or still in flight elsewhere)
//!   is a no-op answered ok, as the reserving instance answers for an unknown or denied
//!   lease (SPEC §4 invariant 3).
//!
//! From what each key holds (amount, kind, and when its pending expires) one chain per key
//! is planned:
//! - concurrency: void the pending hold; if it already expired (`pending_transfer_expired`)
//!   it was released anyway;
//! - rolling, actual < reserved: void and re-reserve the actual until the reserve's own
//!   expiry, linked, so the swap is atomic and nobody can take the slack in between (and the
//!   re-reserve always fits: the void freed more). TigerBeetle timeouts are whole seconds,
//!   so the remaining time is rounded UP: the reservation may outlive its window by under a
//!   second, never the reverse;
//! - rolling, actual > reserved: a pending for the difference for the rest of the window
//!   (at least 1 s). If it does not fit (`exceeds_credits`, or `id_already_failed` on a
//!   retry) and the key's overage is `debt`, a posted debt → operator transfer records the
//!   difference on the debt account, from which `usage.debt` is read. Debt consumes no
//!   capacity;
//! - a rolling reservation whose window has already passed is left alone (it expired).
//!
//! The window is the one in force at reserve time (the pending's own timeout): a window
//! changed between reserve and complete does not move it.
//!
//! All chains go out together in one submission (so usually one request), the debt
//! transfers in a second one. Every transfer id is deterministic, so a complete retried after
//! a backend error, or sent to several instances (one after the other or at once), replays
//! the same ids and TigerBeetle answers `exists` for what was already done: it applies once.
//! For that, a failed complete puts the lease back as not completed. The first complete of a
//! lease wins: a later one with other actuals finds its ids taken (`exists_with_different_*`)
//! and changes nothing. (One exception across instances: a rolling actual equal to what was
//! reserved writes nothing, so another instance cannot tell that complete from none.)

use std::collections::HashSet;

use log::debug;
use tigerbeetle_unofficial::error::CreateTransferErrorKind as Kind;
use tigerbeetle_unofficial::Transfer;

use super::backend::TigerBeetleBackend;
use super::book::Book;
use super::ids::id_for_label;
use super::transfers::{self, verdict, Failures, Verdict};
use crate::backend::{BackendError, Fault};
use crate::model::leases::Hold;
use crate::model::{CompleteCommand, LeaseId, LimitKind, Overage};

/// What a lease holds on one key, as its reserve recorded it: the input of planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// The limit key.
    pub key: String,
    /// Units the reserve took.
    pub amount: u64,
    /// The key's kind.
    pub kind: LimitKind,
    /// When the reserve's pending transfer expires (Unix ms).
    pub expires_at_ms: i64,
}

impl Reserved {
    /// What a lease reserved here holds, from its lease-table holds.
    fn from_holds(reserved_at_ms: i64, holds: &[Hold]) -> Vec<Reserved> {
        holds
            .iter()
            .map(|hold| Reserved {
                key: hold.key.to_string(),
                amount: hold.amount,
                kind: hold.kind,
                expires_at_ms: reserved_at_ms.saturating_add(hold.hold_ms),
            })
            .collect()
    }
}

/// What one planned chain does.
#[derive(Debug, Clone)]
enum Step {
    /// Void a concurrency hold.
    Release,
    /// Void a rolling reservation and re-reserve the actual for `timeout_seconds`.
    Shrink { actual: u64, timeout_seconds: u32 },
    /// Reserve an overage for `timeout_seconds`; `debt` says whether a miss becomes debt.
    Overage {
        amount: u64,
        debt: bool,
        timeout_seconds: u32,
    },
}

#[derive(Debug)]
struct Planned {
    key: String,
    step: Step,
    chain: Vec<Transfer>,
}

impl Planned {
    /// Ids of transfers whose presence on the ledger says this step was done already: the
    /// void of a release or shrink; the overage's pending or its debt.
    fn done_by(&self, lease: LeaseId) -> Vec<u128> {
        let labels = match self.step {
            Step::Release | Step::Shrink { .. } => vec![transfers::void_label(lease, &self.key)],
            Step::Overage { .. } => vec![
                transfers::rereserve_label(lease, &self.key),
                transfers::debt_label(lease, &self.key),
            ],
        };
        labels.iter().map(|l| id_for_label(l)).collect()
    }
}

/// Plans the chains of a complete of a lease holding `reserved`, at `now_ms`. The one
/// decision for leases reserved here and elsewhere; `book` gives each key's overage.
fn plan(
    book: &Book,
    command: &CompleteCommand,
    reserved: &[Reserved],
    now_ms: i64,
) -> Vec<Planned> {
    let lease = command.lease;
    let mut planned = Vec::new();
    for held in reserved {
        let key = held.key.clone();
        match held.kind {
            LimitKind::Concurrency => planned.push(Planned {
                chain: vec![transfers::void(lease, &key)],
                key,
                step: Step::Release,
            }),
            LimitKind::Rolling => {
                let Some(actual) = command.actuals.iter().find(|a| a.key == key) else {
                    continue;
                };
                let remaining_ms = held.expires_at_ms.saturating_sub(now_ms);
                if remaining_ms <= 0 {
                    continue;
                }
                let actual = actual.actual_amount;
                if actual < held.amount {
                    planned.push(Planned {
                        chain: transfers::shrink_chain(lease, &key, actual, remaining_ms),
                        key,
                        step: Step::Shrink {
                            actual,
                            timeout_seconds: transfers::remaining_seconds(remaining_ms),
                        },
                    });
                } else if actual > held.amount {
                    let amount = actual - held.amount;
                    let debt = book
                        .definition(&key)
                        .is_some_and(|d| d.overage == Overage::Debt);
                    planned.push(Planned {
                        chain: vec![transfers::overage(lease, &key, amount, remaining_ms)],
                        step: Step::Overage {
                            amount,
                            debt,
                            timeout_seconds: transfers::remaining_seconds(remaining_ms.max(1000)),
                        },
                        key,
                    });
                }
            }
        }
    }
    planned
}

/// A void whose pending is gone already: expired, voided before, or never created.
fn released_anyway(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::PendingTransferExpired
            | Kind::PendingTransferAlreadyVoided
            | Kind::PendingTransferNotFound
            | Kind::IdAlreadyFailed
    )
}

/// Checks one chain's answer; returns the debt transfer to record, if any.
fn settle(
    lease: LeaseId,
    planned: &Planned,
    answer: Result<Failures, BackendError>,
) -> Result<Option<Transfer>, BackendError> {
    let failures = answer?;
    let refused = |kind: Kind| -> BackendError {
        Fault::CompleteRefused {
            key: planned.key.clone(),
            lease,
            code: format!("{kind:?}"),
        }
        .into()
    };
    match (verdict(&failures), &planned.step) {
        (Verdict::Applied | Verdict::AlreadyApplied, _) => Ok(None),
        (Verdict::Failed { index: 0, kind }, Step::Release | Step::Shrink { .. })
            if released_anyway(kind) =>
        {
            Ok(None)
        }
        (
            Verdict::Failed {
                kind: Kind::ExceedsCredits | Kind::IdAlreadyFailed,
                ..
            },
            Step::Overage { amount, debt, .. },
        ) => {
            debug!(
                "lease {lease}: overage {amount} on {} does not fit{}",
                planned.key,
                if *debt { "; recorded as debt" } else { "" }
            );
            Ok(debt.then(|| transfers::debt(lease, &planned.key, *amount)))
        }
        (Verdict::Failed { kind, .. }, _) => Err(refused(kind)),
    }
}

impl TigerBeetleBackend {
    /// Mirrors a settled chain in the book's reservations (for exact hints).
    fn record(&self, lease: LeaseId, planned: &Planned, applied: bool, now_ms: i64) {
        let mut book = self.book();
        match planned.step {
            Step::Release => book.released(lease, &planned.key),
            Step::Shrink {
                actual,
                timeout_seconds,
            } if applied => book.replaced(lease, &planned.key, actual, now_ms, timeout_seconds),
            Step::Shrink { .. } => book.released(lease, &planned.key),
            Step::Overage {
                amount,
                timeout_seconds,
                ..
            } if applied => book.extended(lease, &planned.key, amount, now_ms, timeout_seconds),
            Step::Overage { .. } => {}
        }
    }

    /// Releases holds and reconciles the rolling reservations of a lease: from the lease
    /// table if it was reserved here, from the ledger otherwise.
    pub(super) async fn complete_lease(
        &self,
        command: CompleteCommand,
    ) -> Result<(), BackendError> {
        let now_ms = self.clock.now_ms();
        let lease = command.lease;
        let local = {
            let mut book = self.book();
            match book.leases.start_complete(lease, now_ms) {
                Some(local) => Some(local),
                // Denied, still being decided, or completed here: nothing to do.
                None if book.leases.get(lease, now_ms).is_some() => return Ok(()),
                None => None,
            }
        };
        let Some((reserved_at_ms, holds)) = local else {
            return self.complete_from_ledger(&command, now_ms).await;
        };
        let reserved = Reserved::from_holds(reserved_at_ms, &holds);
        let planned = plan(&self.book(), &command, &reserved, now_ms);
        let result = self.run_complete(&command, planned, now_ms).await;
        if result.is_err() {
            // Not done: let a retry of the same complete run again.
            let longest = holds.iter().map(|h| h.hold_ms).max().unwrap_or(0);
            self.book()
                .leases
                .allow(lease, reserved_at_ms, holds, longest);
        }
        result
    }

    /// Completes a lease this instance does not know, from what the ledger holds of it.
    /// Steps the ledger shows done already are not sent again.
    async fn complete_from_ledger(
        &self,
        command: &CompleteCommand,
        now_ms: i64,
    ) -> Result<(), BackendError> {
        let lease = command.lease;
        let found = self.lease_transfers(lease).await?;
        let planned = {
            let book = self.book();
            let reserved = super::ledger_lease::reserved(lease, &found, &book)?;
            plan(&book, command, &reserved, now_ms)
        };
        let done: HashSet<u128> = found.iter().map(Transfer::id).collect();
        let planned = planned
            .into_iter()
            .filter(|p| !p.done_by(lease).iter().any(|id| done.contains(id)))
            .collect();
        self.run_complete(command, planned, now_ms).await
    }

    async fn run_complete(
        &self,
        command: &CompleteCommand,
        planned: Vec<Planned>,
        now_ms: i64,
    ) -> Result<(), BackendError> {
        if planned.is_empty() {
            return Ok(());
        }
        let answers = self
            .submit(planned.iter().map(|p| p.chain.clone()).collect())
            .await;
        let mut debts = Vec::new();
        let mut first_error = None;
        for (planned, answer) in planned.iter().zip(answers) {
            let applied = matches!(
                answer.as_ref().map(|failures| verdict(failures)),
                Ok(Verdict::Applied | Verdict::AlreadyApplied)
            );
            let settled = settle(command.lease, planned, answer);
            if settled.is_ok() {
                self.record(command.lease, planned, applied, now_ms);
            }
            match settled {
                Ok(Some(debt)) => debts.push((planned.key.clone(), vec![debt])),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !debts.is_empty() {
            let answers = self
                .submit(debts.iter().map(|(_, chain)| chain.clone()).collect())
                .await;
            for ((key, _), answer) in debts.iter().zip(answers) {
                match answer.map(|failures| verdict(&failures)) {
                    Ok(Verdict::Applied | Verdict::AlreadyApplied) => {}
                    Ok(Verdict::Failed { kind, .. }) => {
                        first_error.get_or_insert(
                            Fault::DebtRefused {
                                key: key.clone(),
                                lease: command.lease,
                                code: format!("{kind:?}"),
                            }
                            .into(),
                        );
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
