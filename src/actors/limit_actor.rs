//! `LimitActor`: the single owner of one key's live state — its definition, its live
//! reservations (rolling) or holds (concurrency) ordered by expiry, its debt and its deny
//! streak. Nobody else mutates that state; the coordinator sends messages.
//!
//! Expiry is lazy: every message first drops what has expired at the `now_ms` it carries, so
//! the actor needs no timers and tests drive time with a manual clock.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;

use crate::model::{DenyStreak, LeaseId, LimitDefinition, LimitKind, Overage, RetryPolicy, Usage};

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

/// Position of a reservation in the expiry order: (expires at, insertion sequence).
type ExpiryKey = (i64, u64);

/// One key's state.
#[derive(Debug)]
pub struct LimitActor {
    /// The definition in force (while decreasing, the old capacity).
    definition: LimitDefinition,
    /// Retry-after policy for hints.
    policy: RetryPolicy,
    /// Live reservations by expiry, each with its lease and amount.
    by_expiry: BTreeMap<ExpiryKey, (LeaseId, u64)>,
    /// Where each lease's reservation sits in `by_expiry`.
    by_lease: HashMap<LeaseId, ExpiryKey>,
    /// Sum of live amounts; never above capacity except after a capacity rollback.
    in_use: u64,
    /// Overage recorded as debt.
    debt: u64,
    /// Consecutive denials, for hints.
    streak: DenyStreak,
    /// Tie-breaker for reservations expiring at the same millisecond.
    next_seq: u64,
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
            by_expiry: BTreeMap::new(),
            by_lease: HashMap::new(),
            in_use: 0,
            debt: 0,
            streak: DenyStreak::default(),
            next_seq: 0,
        }
    }

    fn expire(&mut self, now_ms: i64) {
        while let Some((&(at, seq), &(lease, amount))) = self.by_expiry.iter().next() {
            if at > now_ms {
                break;
            }
            self.by_expiry.remove(&(at, seq));
            self.by_lease.remove(&lease);
            self.release_amount(amount);
        }
    }

    /// Gives back `amount` units. More than is in use would be a bookkeeping bug: it is
    /// caught in debug builds and clamped at zero otherwise (never a wrap to `u64::MAX`).
    fn release_amount(&mut self, amount: u64) {
        let left = self.in_use.checked_sub(amount);
        debug_assert!(
            left.is_some(),
            "releasing {amount} with only {} in use",
            self.in_use
        );
        self.in_use = left.unwrap_or(0);
    }

    /// `in_use <= capacity` must hold after every take and every decrease.
    fn debug_check_capacity(&self) {
        debug_assert!(
            self.in_use <= self.definition.capacity,
            "{} in use exceeds capacity {} of {}",
            self.in_use,
            self.definition.capacity,
            self.definition.key
        );
    }

    fn available(&self) -> u64 {
        self.definition.capacity.saturating_sub(self.in_use)
    }

    fn fits(&self, amount: u64) -> bool {
        self.in_use
            .checked_add(amount)
            .is_some_and(|total| total <= self.definition.capacity)
    }

    fn insert(&mut self, lease: LeaseId, amount: u64, expires_at_ms: i64) {
        let key = (expires_at_ms, self.next_seq);
        self.next_seq += 1;
        self.by_expiry.insert(key, (lease, amount));
        self.by_lease.insert(lease, key);
        self.in_use += amount;
    }

    fn remove(&mut self, lease: LeaseId) -> Option<(i64, u64)> {
        let key = self.by_lease.remove(&lease)?;
        let (_, amount) = self.by_expiry.remove(&key)?;
        self.release_amount(amount);
        Some((key.0, amount))
    }

    fn usage(&self) -> Usage {
        Usage {
            in_use: self.in_use,
            available: self.available(),
            debt: self.debt,
        }
    }
}

impl Handler<TryTake> for LimitActor {
    type Result = TakeResult;

    fn handle(&mut self, msg: TryTake, _: &mut Context<Self>) -> TakeResult {
        self.expire(msg.now_ms);
        if !self.fits(msg.amount) {
            let retry_after_ms = self.policy.hint_ms(&self.definition, self.streak.get());
            self.streak.on_deny();
            return TakeResult::NotFit { retry_after_ms };
        }
        self.streak.on_allow();
        let mut expires = msg.now_ms.saturating_add(self.definition.hold_ms());
        let mut amount = msg.amount;
        // A lease the coordinator has already forgotten may still hold an overage extension
        // here: merge rather than drop it (over-counting is the safe side).
        if let Some((old_expires, old_amount)) = self.remove(msg.lease) {
            expires = expires.max(old_expires);
            amount += old_amount;
        }
        self.insert(msg.lease, amount, expires);
        self.debug_check_capacity();
        TakeResult::Taken
    }
}

impl Handler<Release> for LimitActor {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.remove(msg.lease);
    }
}

impl Handler<Reconcile> for LimitActor {
    type Result = ();

    fn handle(&mut self, msg: Reconcile, _: &mut Context<Self>) {
        self.expire(msg.now_ms);
        if self.definition.kind != LimitKind::Rolling {
            self.remove(msg.lease);
            return;
        }
        // An expired reservation is gone: the call's window has passed, nothing to reconcile.
        let Some((expires_at, reserved)) = self.remove(msg.lease) else {
            return;
        };
        if msg.actual <= reserved {
            // Shrink to the actual; the expiry stays where it was.
            if msg.actual > 0 {
                self.insert(msg.lease, msg.actual, expires_at);
            }
            return;
        }
        let overage = msg.actual - reserved;
        if self.fits(msg.actual) {
            // The difference is held for the rest of the window, at least one second.
            let expires = expires_at.max(msg.now_ms.saturating_add(MIN_OVERAGE_HOLD_MS));
            self.insert(msg.lease, msg.actual, expires);
            self.debug_check_capacity();
            return;
        }
        self.insert(msg.lease, reserved, expires_at);
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
        self.expire(msg.now_ms);
        MessageResult(self.usage())
    }
}

impl Handler<TryDecrease> for LimitActor {
    type Result = bool;

    fn handle(&mut self, msg: TryDecrease, _: &mut Context<Self>) -> bool {
        self.expire(msg.now_ms);
        // available >= capacity - to  ⇔  in_use <= to
        if self.in_use <= msg.to {
            self.definition.capacity = msg.to;
            self.debug_check_capacity();
            true
        } else {
            false
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
    #[should_panic(expected = "releasing 3 with only 2 in use")]
    fn releasing_more_than_in_use_is_a_bug() {
        let mut a = actor(5);
        a.insert(LeaseId::new(), 2, 1000);
        a.release_amount(3);
    }

    #[test]
    #[should_panic(expected = "in use exceeds capacity")]
    fn capacity_check_catches_overfill() {
        let mut a = actor(1);
        a.insert(LeaseId::new(), 2, 1000);
        a.debug_check_capacity();
    }

    #[test]
    fn expiry_and_removal_give_back_exactly_what_was_taken() {
        let mut a = actor(10);
        let (x, y) = (LeaseId::new(), LeaseId::new());
        a.insert(x, 4, 100);
        a.insert(y, 5, 200);
        a.debug_check_capacity();
        assert_eq!(a.remove(x), Some((100, 4)));
        assert_eq!(a.remove(x), None);
        a.expire(200);
        assert_eq!(a.usage().in_use, 0);
        assert_eq!(a.usage().available, 10);
    }
}
