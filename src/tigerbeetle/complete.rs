//! `complete` on TigerBeetle (SPEC §4 "Complete", §5).
//!
//! From the lease's holds (kept in memory at reserve time) one chain per key is planned:
//! - concurrency: void the pending hold; if it already expired (`pending_transfer_expired`)
//!   it was released anyway;
//! - rolling, actual < reserved: void and re-reserve the actual for the REMAINING window,
//!   linked, so the swap is atomic and nobody can take the slack in between (and the
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
//! All chains go out together in one submission (so usually one request), the debt
//! transfers in a second one. Every transfer id is deterministic, so a complete retried after
//! a backend error replays the same ids and TigerBeetle answers `exists` for what was already
//! done. For that, a failed complete puts the lease back as not completed.

use log::debug;
use tigerbeetle_unofficial::error::CreateTransferErrorKind as Kind;
use tigerbeetle_unofficial::Transfer;

use super::backend::TigerBeetleBackend;
use super::transfers::{self, verdict, Failures, Verdict};
use crate::backend::{BackendError, Fault};
use crate::model::leases::Hold;
use crate::model::{CompleteCommand, LeaseId, LimitKind, Overage};

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

/// Plans the chains of a complete.
fn plan(
    backend: &TigerBeetleBackend,
    command: &CompleteCommand,
    reserved_at_ms: i64,
    holds: &[Hold],
    now_ms: i64,
) -> Vec<Planned> {
    let book = backend.book();
    let lease = command.lease;
    let mut planned = Vec::new();
    for hold in holds {
        let key = hold.key.clone();
        match hold.kind {
            LimitKind::Concurrency => planned.push(Planned {
                chain: vec![transfers::void(lease, &key)],
                key,
                step: Step::Release,
            }),
            LimitKind::Rolling => {
                let Some(actual) = command.actuals.iter().find(|a| a.key == key) else {
                    continue;
                };
                let Some(definition) = book.definition(&key) else {
                    continue;
                };
                let remaining_ms = reserved_at_ms
                    .saturating_add(backend.policy.hold_ms(definition))
                    .saturating_sub(now_ms);
                if remaining_ms <= 0 {
                    continue;
                }
                let actual = actual.actual_amount;
                if actual < hold.amount {
                    planned.push(Planned {
                        chain: transfers::shrink_chain(lease, &key, actual, remaining_ms),
                        key,
                        step: Step::Shrink {
                            actual,
                            timeout_seconds: transfers::remaining_seconds(remaining_ms),
                        },
                    });
                } else if actual > hold.amount {
                    let amount = actual - hold.amount;
                    planned.push(Planned {
                        chain: vec![transfers::overage(lease, &key, amount, remaining_ms)],
                        step: Step::Overage {
                            amount,
                            debt: definition.overage == Overage::Debt,
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

    /// Releases holds and reconciles the rolling reservations of a lease.
    pub(super) async fn complete_lease(
        &self,
        command: CompleteCommand,
    ) -> Result<(), BackendError> {
        let now_ms = self.clock.now_ms();
        let lease = command.lease;
        let Some((reserved_at_ms, holds)) = self.book().leases.start_complete(lease, now_ms) else {
            return Ok(());
        };
        let result = self
            .run_complete(&command, reserved_at_ms, &holds, now_ms)
            .await;
        if result.is_err() {
            // Not done: let a retry of the same complete run again.
            let mut book = self.book();
            let longest = book.longest_hold_ms(&holds);
            book.leases.allow(lease, reserved_at_ms, holds, longest);
        }
        result
    }

    async fn run_complete(
        &self,
        command: &CompleteCommand,
        reserved_at_ms: i64,
        holds: &[Hold],
        now_ms: i64,
    ) -> Result<(), BackendError> {
        let planned = plan(self, command, reserved_at_ms, holds, now_ms);
        if planned.is_empty() {
            return Ok(());
        }
        let answers = self
            .submit(planned.iter().map(|p| p.chain.clone()).collect())
            .await?;
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
                .await?;
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
