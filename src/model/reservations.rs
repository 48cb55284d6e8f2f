//! One key's live reservations in expiry order, and the exact time until an amount fits.
//!
//! Expiry is lazy: [`Reservations::expire`] drops whatever is due at the `now_ms` it is
//! given, so the owner needs no timers and tests drive time by hand. A reservation expiring
//! at `t` is gone at `t` (it no longer counts for a reserve made at `t`).

use std::collections::BTreeMap;

use foldhash::HashMap;

use super::LeaseId;

/// Position of a reservation in the expiry order: (expires at, insertion sequence).
type ExpiryKey = (i64, u64);

/// Live reservations of one key, by expiry and by lease (one entry per lease).
#[derive(Debug, Default)]
pub struct Reservations {
    /// Live reservations by expiry, each with its lease and amount.
    by_expiry: BTreeMap<ExpiryKey, (LeaseId, u64)>,
    /// Where each lease's reservation sits in `by_expiry`.
    by_lease: HashMap<LeaseId, ExpiryKey>,
    /// Sum of live amounts.
    in_use: u64,
    /// Tie-breaker for reservations expiring at the same millisecond.
    next_seq: u64,
}

impl Reservations {
    /// No reservations.
    pub fn new() -> Self {
        Reservations::default()
    }

    /// Drops every reservation due at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
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

    /// Sum of live amounts (as of the last [`Reservations::expire`]).
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// Whether `amount` more fits under `capacity`.
    pub fn fits(&self, amount: u64, capacity: u64) -> bool {
        self.in_use
            .checked_add(amount)
            .is_some_and(|total| total <= capacity)
    }

    /// Adds `lease`'s reservation of `amount` until `expires_at_ms`. A lease already holding
    /// something here is merged: the amounts add up and the later expiry is kept (when in
    /// doubt, over-count).
    pub fn insert(&mut self, lease: LeaseId, amount: u64, expires_at_ms: i64) {
        let (amount, expires_at_ms) = match self.remove(lease) {
            Some((old_expiry, old_amount)) => (
                amount.saturating_add(old_amount),
                expires_at_ms.max(old_expiry),
            ),
            None => (amount, expires_at_ms),
        };
        self.insert_absent(lease, amount, expires_at_ms);
    }

    /// Sets `lease`'s reservation to `amount` until `expires_at_ms`, dropping whatever it
    /// held here before (a replayed reserve recorded again).
    pub fn replace(&mut self, lease: LeaseId, amount: u64, expires_at_ms: i64) {
        self.remove(lease);
        self.insert_absent(lease, amount, expires_at_ms);
    }

    /// Adds a reservation for a lease that holds nothing here.
    fn insert_absent(&mut self, lease: LeaseId, amount: u64, expires_at_ms: i64) {
        let key = (expires_at_ms, self.next_seq);
        self.next_seq += 1;
        self.by_expiry.insert(key, (lease, amount));
        self.by_lease.insert(lease, key);
        self.in_use = self.in_use.saturating_add(amount);
    }

    /// Removes `lease`'s reservation; returns its (expiry, amount).
    pub fn remove(&mut self, lease: LeaseId) -> Option<(i64, u64)> {
        let key = self.by_lease.remove(&lease)?;
        let (_, amount) = self.by_expiry.remove(&key)?;
        self.release_amount(amount);
        Some((key.0, amount))
    }

    /// Every live reservation as (lease, amount, expires at), in expiry order.
    pub fn iter(&self) -> impl Iterator<Item = (LeaseId, u64, i64)> + '_ {
        self.by_expiry
            .iter()
            .map(|(&(at, _), &(lease, amount))| (lease, amount, at))
    }

    /// When the earliest live reservation expires.
    pub fn earliest_expiry_ms(&self) -> Option<i64> {
        self.by_expiry.keys().next().map(|&(at, _)| at)
    }

    /// How long from `now_ms` until `amount` fits under `capacity`, counting only the
    /// reservations live now as they expire one after another: 0 if it fits now, `None` if
    /// it cannot fit even once everything has expired (`amount > capacity`). Call
    /// [`Reservations::expire`] with the same `now_ms` first.
    pub fn wait_until_fits_ms(&self, amount: u64, capacity: u64, now_ms: i64) -> Option<u64> {
        if amount > capacity {
            return None;
        }
        if self.fits(amount, capacity) {
            return Some(0);
        }
        // Units that must expire before `amount` fits.
        let mut need = self.in_use.saturating_add(amount) - capacity;
        for (&(at, _), &(_, held)) in &self.by_expiry {
            if held >= need {
                let wait = at.saturating_sub(now_ms).max(1);
                return Some(u64::try_from(wait).unwrap_or(u64::MAX));
            }
            need -= held;
        }
        // Unreachable while in_use is the sum of the entries; stay safe regardless.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "releasing 3 with only 2 in use")]
    fn releasing_more_than_in_use_is_a_bug() {
        let mut r = Reservations::new();
        r.insert(LeaseId::new(), 2, 1000);
        r.release_amount(3);
    }

    fn with(entries: &[(u64, i64)]) -> (Reservations, Vec<LeaseId>) {
        let mut r = Reservations::new();
        let leases: Vec<LeaseId> = entries.iter().map(|_| LeaseId::new()).collect();
        for (lease, &(amount, at)) in leases.iter().zip(entries) {
            r.insert(*lease, amount, at);
        }
        (r, leases)
    }

    #[test]
    fn the_wait_is_the_expiry_that_frees_enough() {
        // Capacity 10: 4 expiring at 1000, 3 at 2000, 3 at 5000; everything in use.
        let (r, _) = with(&[(4, 1000), (3, 2000), (3, 5000)]);
        assert_eq!(r.wait_until_fits_ms(1, 10, 0), Some(1000));
        assert_eq!(r.wait_until_fits_ms(4, 10, 0), Some(1000));
        // 5 needs the first two expiries.
        assert_eq!(r.wait_until_fits_ms(5, 10, 0), Some(2000));
        assert_eq!(r.wait_until_fits_ms(8, 10, 500), Some(4500));
        assert_eq!(r.wait_until_fits_ms(10, 10, 0), Some(5000));
        assert_eq!(r.wait_until_fits_ms(11, 10, 0), None);
    }

    #[test]
    fn a_fitting_amount_waits_nothing_and_expiry_is_exact() {
        let (mut r, _) = with(&[(6, 1000)]);
        assert_eq!(r.wait_until_fits_ms(4, 10, 0), Some(0));
        assert_eq!(r.wait_until_fits_ms(5, 10, 999), Some(1));
        r.expire(999);
        assert_eq!(r.in_use(), 6);
        r.expire(1000);
        assert_eq!(r.in_use(), 0);
        assert_eq!(r.earliest_expiry_ms(), None);
    }

    #[test]
    fn a_merged_lease_keeps_the_later_expiry() {
        let (mut r, leases) = with(&[(2, 1000), (3, 3000)]);
        r.insert(leases[0], 1, 4000);
        assert_eq!(r.in_use(), 6);
        assert_eq!(r.remove(leases[0]), Some((4000, 3)));
        assert_eq!(r.earliest_expiry_ms(), Some(3000));
    }

    #[test]
    fn a_replaced_lease_holds_only_its_new_amount_until_its_new_expiry() {
        let (mut r, leases) = with(&[(2, 1000), (3, 3000)]);
        r.replace(leases[1], 4, 500);
        assert_eq!(r.in_use(), 6);
        assert_eq!(r.earliest_expiry_ms(), Some(500));
        r.replace(LeaseId::new(), 1, 2000);
        assert_eq!(r.in_use(), 7);
        r.expire(1000);
        assert_eq!(r.in_use(), 1);
    }
}
