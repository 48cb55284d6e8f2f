//! `LimitActor`: the single owner of one key's live state — its definition, its live
//! reservations (rolling) or holds (concurrency) ordered by expiry, its debt and its deny
//! streak. A denied rolling take is told exactly when its amount fits, from that expiry
//! order (SPEC §9). Nobody else mutates that state; the coordinator sends messages.
//!
//! Expiry is lazy: every message first drops what has expired at the `now_ms` it carries, so
//! the actor needs no timers and tests drive time with a manual clock.

use actix::prelude::*;

use crate::model::{
    DenyStreak, KeySnapshot, LeaseId, LimitDefinition, LimitKind, Overage, ReservationRecord,
    Reservations, RetryPolicy, Usage,
};

/// Shortest time an overage reservation is kept (SPEC §4: "at least 1 s").
const MIN_OVERAGE_HOLD_MS: i64 = 1000;

/// Takes `amount` for `lease` if it fits.
#[derive(Debug, Message)]
#[rtype(result = "TakeResult")]
pub struct TryTake {
    /// The lease taking capacity.
    pub lease: LeaseId,
    /// Units to take.
    pub amount: u64,
    /// The coordinator's "now", shared by every key of one reserve.
    pub now_ms: i64,
}

/// The answer to [`TryTake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub enum TakeResult {
    /// Taken.
    Taken,
    /// Did not fit; nothing was taken.
    NotFit {
        /// The key's retry-after hint.
        retry_after_ms: u64,
    },
}

/// Drops whatever `lease` holds on this key (rollback of a tentative take, or a concurrency
/// release on complete).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Release {
    /// The lease.
    pub lease: LeaseId,
}

/// Reconciles a rolling reservation with the actual usage (SPEC §4 "Complete" 2).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reconcile {
    /// The lease.
    pub lease: LeaseId,
    /// Units really used.
    pub actual: u64,
    /// The coordinator's "now".
    pub now_ms: i64,
}

/// Replaces the definition (capacity in force, window, overage, ...).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Redefine(pub LimitDefinition);

/// Asks for live usage.
#[derive(Debug, Message)]
#[rtype(result = "Usage")]
pub struct GetUsage {
    /// "Now" for expiry.
    pub now_ms: i64,
}

/// Lowers capacity to `to` if at most `to` is in use; answers whether it did.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct TryDecrease {
    /// The new capacity.
    pub to: u64,
    /// "Now" for expiry.
    pub now_ms: i64,
}

/// Asks for the key's live reservations and debt, for a snapshot.
#[derive(Debug, Message)]
#[rtype(result = "KeySnapshot")]
pub struct ExportKey {
    /// "Now" for expiry: only what is live then is exported.
    pub now_ms: i64,
}

/// Adds a snapshot's live reservations and debt to the key (at start, before any reserve).
/// Answers how many reservations were still live and taken in.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct ImportKey {
    /// What the snapshot holds for this key.
    pub snapshot: KeySnapshot,
    /// "Now": reservations already expired are dropped.
    pub now_ms: i64,
}

/// Counts the key's whole capacity in use until `until_ms`: what a start does when it cannot
/// know what was reserved before (an unreadable snapshot), so that nothing is granted twice.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BlockUntil {
    /// When the capacity is free again (Unix ms).
    pub until_ms: i64,
}

/// One key's state.
#[derive(Debug)]
pub struct LimitActor {
    /// The definition in force (while decreasing, the old capacity).
    definition: LimitDefinition,
    /// Retry-after policy for hints, and the window margin of rolling holds.
    policy: RetryPolicy,
    /// Live reservations (rolling) or holds (concurrency) in expiry order. Their sum is never
    /// above capacity except after a capacity rollback.
    reservations: Reservations,
    /// Overage recorded as debt.
    debt: u64,
    /// Consecutive denials, for the table hints of concurrency keys.
    streak: DenyStreak,
}

impl Actor for LimitActor {
    type Context = Context<Self>;
}

impl LimitActor {
    /// A key with nothing in use.
    pub fn new(definition: LimitDefinition, policy: RetryPolicy) -> Self {
        LimitActor {
            definition,
            policy,
            reservations: Reservations::new(),
            debt: 0,
            streak: DenyStreak::default(),
        }
    }

    /// `in_use <= capacity` must hold after every take and every decrease.
    fn debug_check_capacity(&self) {
        debug_assert!(
            self.reservations.in_use() <= self.definition.capacity,
            "{} in use exceeds capacity {} of {}",
            self.reservations.in_use(),
            self.definition.capacity,
            self.definition.key
        );
    }

    fn available(&self) -> u64 {
        self.definition
            .capacity
            .saturating_sub(self.reservations.in_use())
    }

    fn fits(&self, amount: u64) -> bool {
        self.reservations.fits(amount, self.definition.capacity)
    }

    fn usage(&self) -> Usage {
        Usage {
            in_use: self.reservations.in_use(),
            available: self.available(),
            debt: self.debt,
        }
    }

    /// The hint for `amount` that did not fit at `now_ms` (expired entries already dropped).
    /// Rolling: exactly when enough live reservations have expired, plus jitter. Concurrency:
    /// the table, never past the earliest hold's timeout.
    fn hint_ms(&self, amount: u64, now_ms: i64) -> u64 {
        let capacity = self.definition.capacity;
        match self.definition.kind {
            LimitKind::Rolling => match self
                .reservations
                .wait_until_fits_ms(amount, capacity, now_ms)
            {
                Some(wait_ms) => self.policy.exact_hint_ms(LimitKind::Rolling, wait_ms),
                None => self.policy.hint_ms(&self.definition, self.streak.get()),
            },
            LimitKind::Concurrency => {
                let earliest = self
                    .reservations
                    .earliest_expiry_ms()
                    .map(|at| u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0));
                self.policy
                    .concurrency_hint_ms(&self.definition, self.streak.get(), earliest)
            }
        }
    }
}

impl Handler<TryTake> for LimitActor {
    type Result = TakeResult;

    fn handle(&mut self, msg: TryTake, _: &mut Context<Self>) -> TakeResult {
        self.reservations.expire(msg.now_ms);
        if !self.fits(msg.amount) {
            let retry_after_ms = self.hint_ms(msg.amount, msg.now_ms);
            self.streak.on_deny();
            return TakeResult::NotFit { retry_after_ms };
        }
        self.streak.on_allow();
        let expires = msg
            .now_ms
            .saturating_add(self.policy.hold_ms(&self.definition));
        // A lease the coordinator has already forgotten may still hold an overage extension
        // here: the insert merges rather than drops it (over-counting is the safe side).
        self.reservations.insert(msg.lease, msg.amount, expires);
        self.debug_check_capacity();
        TakeResult::Taken
    }
}

impl Handler<Release> for LimitActor {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.reservations.remove(msg.lease);
    }
}

impl Handler<Reconcile> for LimitActor {
    type Result = ();

    fn handle(&mut self, msg: Reconcile, _: &mut Context<Self>) {
        self.reservations.expire(msg.now_ms);
        if self.definition.kind != LimitKind::Rolling {
            self.reservations.remove(msg.lease);
            return;
        }
        // An expired reservation is gone: the call's window has passed, nothing to reconcile.
        let Some((expires_at, reserved)) = self.reservations.remove(msg.lease) else {
            return;
        };
        if msg.actual <= reserved {
            // Shrink to the actual; the expiry stays where it was.
            if msg.actual > 0 {
                self.reservations.insert(msg.lease, msg.actual, expires_at);
            }
            return;
        }
        let overage = msg.actual - reserved;
        if self.fits(msg.actual) {
            // The difference is held for the rest of the window, at least one second.
            let expires = expires_at.max(msg.now_ms.saturating_add(MIN_OVERAGE_HOLD_MS));
            self.reservations.insert(msg.lease, msg.actual, expires);
            self.debug_check_capacity();
            return;
        }
        self.reservations.insert(msg.lease, reserved, expires_at);
        if self.definition.overage == Overage::Debt {
            self.debt = self.debt.saturating_add(overage);
        }
    }
}

impl Handler<Redefine> for LimitActor {
    type Result = ();

    fn handle(&mut self, msg: Redefine, _: &mut Context<Self>) {
        self.definition = msg.0;
    }
}

impl Handler<GetUsage> for LimitActor {
    type Result = MessageResult<GetUsage>;

    fn handle(&mut self, msg: GetUsage, _: &mut Context<Self>) -> Self::Result {
        self.reservations.expire(msg.now_ms);
        MessageResult(self.usage())
    }
}

impl Handler<TryDecrease> for LimitActor {
    type Result = bool;

    fn handle(&mut self, msg: TryDecrease, _: &mut Context<Self>) -> bool {
        self.reservations.expire(msg.now_ms);
        // available >= capacity - to  ⇔  in_use <= to
        if self.reservations.in_use() <= msg.to {
            self.definition.capacity = msg.to;
            self.debug_check_capacity();
            true
        } else {
            false
        }
    }
}

impl Handler<ExportKey> for LimitActor {
    type Result = MessageResult<ExportKey>;

    fn handle(&mut self, msg: ExportKey, _: &mut Context<Self>) -> Self::Result {
        self.reservations.expire(msg.now_ms);
        MessageResult(KeySnapshot {
            key: self.definition.key.clone(),
            debt: self.debt,
            reservations: self
                .reservations
                .iter()
                .map(|(lease, amount, expires_at_ms)| ReservationRecord {
                    lease,
                    amount,
                    expires_at_ms,
                })
                .collect(),
        })
    }
}

impl Handler<ImportKey> for LimitActor {
    type Result = usize;

    fn handle(&mut self, msg: ImportKey, _: &mut Context<Self>) -> usize {
        self.reservations.expire(msg.now_ms);
        // Debt is accounting only and never shrinks: importing twice must not double it.
        self.debt = self.debt.max(msg.snapshot.debt);
        let mut imported = 0;
        for record in msg.snapshot.reservations {
            if record.expires_at_ms > msg.now_ms && record.amount > 0 {
                // May exceed a capacity lowered meanwhile: over-counting is the safe side.
                self.reservations
                    .insert(record.lease, record.amount, record.expires_at_ms);
                imported += 1;
            }
        }
        imported
    }
}

impl Handler<BlockUntil> for LimitActor {
    type Result = ();

    fn handle(&mut self, msg: BlockUntil, _: &mut Context<Self>) {
        let taken = self.definition.capacity;
        if taken > 0 {
            self.reservations
                .insert(LeaseId::new(), taken, msg.until_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(capacity: u64) -> LimitActor {
        LimitActor::new(
            LimitDefinition::concurrency("k", capacity, 60),
            RetryPolicy::default(),
        )
    }

    #[test]
    #[should_panic(expected = "in use exceeds capacity")]
    fn capacity_check_catches_overfill() {
        let mut a = actor(1);
        a.reservations.insert(LeaseId::new(), 2, 1000);
        a.debug_check_capacity();
    }

    #[test]
    fn expiry_and_removal_give_back_exactly_what_was_taken() {
        let mut a = actor(10);
        let (x, y) = (LeaseId::new(), LeaseId::new());
        a.reservations.insert(x, 4, 100);
        a.reservations.insert(y, 5, 200);
        a.debug_check_capacity();
        assert_eq!(a.reservations.remove(x), Some((100, 4)));
        assert_eq!(a.reservations.remove(x), None);
        a.reservations.expire(200);
        assert_eq!(a.usage().in_use, 0);
        assert_eq!(a.usage().available, 10);
    }
}
