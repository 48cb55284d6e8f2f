//! `KeyState`: the live state of one key — its definition, its live reservations (rolling)
//! or holds (concurrency) ordered by expiry, its debt and its deny streak. A denied rolling
//! take is told exactly when its amount fits, from that expiry order (SPEC §9). Each key's
//! state is owned by exactly one [`super::key_shard::KeyShard`] actor (in its
//! [`super::shard_keys::ShardKeys`], behind the shard's lock); these methods run under that
//! lock, on whichever thread drains the shard's inbox, one at a time.
//!
//! Expiry is lazy: every call first drops what has expired at the `now_ms` it is given, so
//! nothing needs timers and tests drive time with a manual clock.

use crate::model::{
    DenyStreak, KeySnapshot, LeaseId, LimitDefinition, LimitKind, Overage, Place,
    ReservationRecord, Reservations, RetryPolicy, Settled, Usage,
};

/// Shortest time an overage reservation is kept (SPEC §4: "at least 1 s").
const MIN_OVERAGE_HOLD_MS: i64 = 1000;

/// The answer to [`KeyState::try_take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeResult {
    /// Taken; the reservation is found again at this place.
    Taken(Place),
    /// Did not fit; nothing was taken.
    NotFit {
        /// The key's retry-after hint.
        retry_after_ms: u64,
    },
}

/// One key's state.
#[derive(Debug)]
pub struct KeyState {
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

impl KeyState {
    /// A key with nothing in use.
    pub fn new(definition: LimitDefinition, policy: RetryPolicy) -> Self {
        KeyState {
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

    /// Live usage (after [`KeyState::expire`]).
    pub fn usage(&self) -> Usage {
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

    /// Drops what has expired at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        self.reservations.expire(now_ms);
    }

    /// Takes `amount` for `lease` if it fits at `now_ms`.
    pub fn try_take(&mut self, lease: LeaseId, amount: u64, now_ms: i64) -> TakeResult {
        self.reservations.expire(now_ms);
        if !self.fits(amount) {
            let retry_after_ms = self.hint_ms(amount, now_ms);
            self.streak.on_deny();
            return TakeResult::NotFit { retry_after_ms };
        }
        self.streak.on_allow();
        let expires = now_ms.saturating_add(self.policy.hold_ms(&self.definition));
        // A separate reservation even if `lease` still holds something here (an overage
        // extension of a lease the coordinator has forgotten): both count.
        let place = self.reservations.insert_placed(lease, amount, expires);
        self.debug_check_capacity();
        TakeResult::Taken(place)
    }

    /// Drops `lease`'s reservation at `place` (or indexed by lease when `None`): rollback of
    /// a tentative take, or a concurrency release on complete.
    pub fn release(&mut self, lease: LeaseId, place: Option<Place>) {
        self.reservations.remove(lease, place);
    }

    /// Reconciles `lease`'s rolling reservation at `place` (or indexed by lease when `None`)
    /// with the actual usage (SPEC §4 "Complete" 2); a concurrency hold is released.
    pub fn reconcile(&mut self, lease: LeaseId, place: Option<Place>, actual: u64, now_ms: i64) {
        self.reservations.expire(now_ms);
        if self.definition.kind != LimitKind::Rolling {
            self.reservations.remove(lease, place);
            return;
        }
        // An expired reservation is gone: the call's window has passed, nothing to reconcile.
        // One within the actual is kept at the actual until its expiry, in place; nothing
        // asks for it again (0 frees it now).
        let Some(Settled::Removed {
            expires_at_ms: expires_at,
            held: reserved,
        }) = self.reservations.settle_within(lease, place, actual)
        else {
            return;
        };
        let overage = actual - reserved;
        if self.fits(actual) {
            // The difference is held for the rest of the window, at least one second.
            // Nothing asks for it again: no index entry.
            let expires = expires_at.max(now_ms.saturating_add(MIN_OVERAGE_HOLD_MS));
            self.reservations.insert_placed(lease, actual, expires);
            self.debug_check_capacity();
            return;
        }
        self.reservations.insert_placed(lease, reserved, expires_at);
        if self.definition.overage == Overage::Debt {
            self.debt = self.debt.saturating_add(overage);
        }
    }

    /// Replaces the definition (capacity in force, window, overage, ...).
    pub fn redefine(&mut self, definition: LimitDefinition) {
        self.definition = definition;
    }

    /// Lowers capacity to `to` if at most `to` is in use at `now_ms`; answers whether it did.
    pub fn try_decrease(&mut self, to: u64, now_ms: i64) -> bool {
        self.reservations.expire(now_ms);
        // available >= capacity - to  ⇔  in_use <= to
        if self.reservations.in_use() <= to {
            self.definition.capacity = to;
            self.debug_check_capacity();
            true
        } else {
            false
        }
    }

    /// The live reservations and debt at `now_ms`, for a snapshot.
    pub fn export(&mut self, now_ms: i64) -> KeySnapshot {
        self.reservations.expire(now_ms);
        KeySnapshot {
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
        }
    }

    /// Adds a snapshot's live reservations and debt (at start, before any reserve); answers
    /// how many reservations were still live at `now_ms` and taken in.
    pub fn import(&mut self, snapshot: KeySnapshot, now_ms: i64) -> usize {
        self.reservations.expire(now_ms);
        // Debt is accounting only and never shrinks: importing twice must not double it.
        self.debt = self.debt.max(snapshot.debt);
        let mut imported = 0;
        for record in snapshot.reservations {
            if record.expires_at_ms > now_ms && record.amount > 0 {
                // May exceed a capacity lowered meanwhile: over-counting is the safe side.
                self.reservations
                    .insert(record.lease, record.amount, record.expires_at_ms);
                imported += 1;
            }
        }
        imported
    }

    /// Counts the whole capacity in use until `until_ms`: what a start does when it cannot
    /// know what was reserved before (an unreadable snapshot), so nothing is granted twice.
    pub fn block_until(&mut self, until_ms: i64) {
        let taken = self.definition.capacity;
        if taken > 0 {
            self.reservations
                .insert_placed(LeaseId::new(), taken, until_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(capacity: u64) -> KeyState {
        KeyState::new(
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
        assert_eq!(a.reservations.remove(x, None), Some((100, 4)));
        assert_eq!(a.reservations.remove(x, None), None);
        a.reservations.expire(200);
        assert_eq!(a.usage().in_use, 0);
        assert_eq!(a.usage().available, 10);
    }
}
