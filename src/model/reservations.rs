//! One key's live reservations in expiry order, and the exact time until an amount fits.
//!
//! Expiry is lazy: [`Reservations::expire`] drops whatever is due at the `now_ms` it is
//! given, so the owner needs no timers and tests drive time by hand. A reservation expiring
//! at `t` is gone at `t` (it no longer counts for a reserve made at `t`).
//!
//! A reservation is found again in one of two ways. A reserve's take gets its [`Place`]
//! back and keeps it (the memory backend's lease table holds it with the lease's holds), so
//! the hot path keeps no index by lease here. Reservations that come without a place kept
//! elsewhere (a snapshot taken back in at start) are indexed by lease instead.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, VecDeque};

use foldhash::HashMap;

use super::LeaseId;

/// A removed reservation leaves a hole in the queue; once holes make up more than half of
/// it (and at least this many), the queue is rebuilt without them.
const MIN_HOLES_TO_COMPACT: usize = 64;

/// Position of a straggler: (expires at, insertion sequence).
type StragglerKey = (i64, u64);

/// A reservation among the stragglers.
#[derive(Debug, Clone, Copy)]
struct Straggler {
    lease: LeaseId,
    amount: u64,
    /// Settled: found no more.
    settled: bool,
}

/// Where one reservation sits in its key's [`Reservations`], as handed out by
/// [`Reservations::insert_placed`]: it stays valid until the reservation is removed,
/// settled or expired (then it finds nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place(Spot);

/// Where a reservation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spot {
    /// In the queue, at this sequence number.
    Queue(u64),
    /// Among the stragglers.
    Straggler(StragglerKey),
}

/// A reservation found: its index in the queue, or its straggler key.
#[derive(Debug, Clone, Copy)]
enum Found {
    Queue(usize),
    Straggler(StragglerKey),
}

/// What [`Reservations::settle_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Settled in place at the actual amount (at most what it held).
    InPlace,
    /// It held less than the actual: removed.
    Removed {
        /// When it would have expired.
        expires_at_ms: i64,
        /// What it held.
        held: u64,
    },
}

/// What a queue slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// A lease's reservation, found through the index by lease.
    Indexed,
    /// A lease's reservation, found through the [`Place`] its taker keeps.
    Placed,
    /// A reservation whose lease has completed: it only waits for its expiry, so it is
    /// found no more and may carry the amounts of other settled slots expiring at the same
    /// millisecond.
    Settled,
    /// Nothing: left by a removal or a merge.
    Hole,
}

/// One slot of the queue.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: i64,
    lease: LeaseId,
    amount: u64,
    /// Sequence number: rising along the queue, never reused, kept by compaction.
    seq: u64,
    state: SlotState,
}

impl Slot {
    /// The amount a slot counts; `None` for a hole.
    fn held(&self) -> Option<u64> {
        (self.state != SlotState::Hole).then_some(self.amount)
    }

    /// Whether it is a lease's reservation still to be found (not settled, not a hole).
    fn findable(&self) -> bool {
        matches!(self.state, SlotState::Indexed | SlotState::Placed)
    }
}

/// Live reservations of one key, by expiry.
///
/// Nearly every reservation of a key expires after every one before it (now + the key's
/// window): those are appended to a queue kept in expiry order, so expiry pops from its
/// front and an insert costs no tree walk. The few that expire earlier than the queue's
/// last entry (overage extensions, imports) go to a small ordered map. Removing a
/// reservation from the queue leaves a hole, dropped when it reaches the front or the back,
/// or when holes outnumber live entries (the queue is then rebuilt: amortized constant time;
/// sequence numbers, hence places, survive it).
#[derive(Debug, Default)]
pub struct Reservations {
    /// Reservations in expiry order, oldest first; never starts or ends with a hole.
    queue: VecDeque<Slot>,
    /// Sequence number of the next slot pushed.
    next_seq: u64,
    /// Holes in `queue`.
    holes: usize,
    /// Reservations expiring before the queue's back when they were added.
    stragglers: BTreeMap<StragglerKey, Straggler>,
    /// Tie-breaker among stragglers expiring at the same millisecond.
    next_straggler: u64,
    /// Where each indexed lease's reservation is in the queue (its sequence number); at most
    /// one reservation per indexed lease.
    in_queue: HashMap<LeaseId, u64>,
    /// Where each indexed straggling lease's reservation is.
    straggler_of: HashMap<LeaseId, StragglerKey>,
    /// Sum of live amounts.
    in_use: u64,
}

impl Reservations {
    /// No reservations.
    pub fn new() -> Self {
        Reservations::default()
    }

    /// Drops every reservation due at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while let Some(slot) = self.queue.front().copied() {
            if slot.at > now_ms {
                break;
            }
            self.pop_front();
            if slot.state == SlotState::Indexed {
                self.in_queue.remove(&slot.lease);
            }
            if let Some(amount) = slot.held() {
                self.release_amount(amount);
            }
        }
        // Stragglers are rare: for most keys this finds an empty map at once.
        while let Some((&(at, seq), &Straggler { lease, amount, .. })) =
            self.stragglers.first_key_value()
        {
            if at > now_ms {
                break;
            }
            self.stragglers.remove(&(at, seq));
            self.unindex_straggler(lease, (at, seq));
            self.release_amount(amount);
        }
        self.drop_leading_holes();
    }

    fn pop_front(&mut self) {
        if let Some(slot) = self.queue.pop_front() {
            if slot.state == SlotState::Hole {
                self.holes -= 1;
            }
        }
    }

    fn drop_leading_holes(&mut self) {
        while self
            .queue
            .front()
            .is_some_and(|s| s.state == SlotState::Hole)
        {
            self.pop_front();
        }
    }

    /// Pops holes off the back of the queue.
    fn drop_trailing_holes(&mut self) {
        while self
            .queue
            .back()
            .is_some_and(|s| s.state == SlotState::Hole)
        {
            self.queue.pop_back();
            self.holes -= 1;
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

    /// Whether no reservation is live.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.stragglers.is_empty()
    }

    /// Whether `amount` more fits under `capacity`.
    pub fn fits(&self, amount: u64, capacity: u64) -> bool {
        self.in_use
            .checked_add(amount)
            .is_some_and(|total| total <= capacity)
    }

    /// Adds a reservation of `amount` for `lease` until `expires_at_ms`, found again only
    /// through the [`Place`] returned (no index entry, no merge with anything `lease` holds
    /// here already).
    pub fn insert_placed(&mut self, lease: LeaseId, amount: u64, expires_at_ms: i64) -> Place {
        if self.goes_last(expires_at_ms) {
            Place(Spot::Queue(self.push_last(
                lease,
                amount,
                expires_at_ms,
                SlotState::Placed,
            )))
        } else {
            Place(Spot::Straggler(self.add_straggler(
                lease,
                amount,
                expires_at_ms,
            )))
        }
    }

    /// Adds `lease`'s reservation of `amount` until `expires_at_ms`, indexed by lease. A
    /// lease already indexed here is merged: the amounts add up and the later expiry is kept
    /// (when in doubt, over-count).
    pub fn insert(&mut self, lease: LeaseId, amount: u64, expires_at_ms: i64) {
        // A new lease expiring last (nearly always): one hash lookup finds it absent and
        // records it.
        if self.goes_last(expires_at_ms) && !self.straggler_of.contains_key(&lease) {
            if let Entry::Vacant(entry) = self.in_queue.entry(lease) {
                entry.insert(self.next_seq);
                self.push_last(lease, amount, expires_at_ms, SlotState::Indexed);
                return;
            }
        }
        let (amount, expires_at_ms) = match self.remove(lease, None) {
            Some((old_expiry, old_amount)) => (
                amount.saturating_add(old_amount),
                expires_at_ms.max(old_expiry),
            ),
            None => (amount, expires_at_ms),
        };
        self.insert_absent(lease, amount, expires_at_ms);
    }

    /// Sets `lease`'s indexed reservation to `amount` until `expires_at_ms`, dropping
    /// whatever it held here before under the index (a replayed reserve recorded again).
    pub fn replace(&mut self, lease: LeaseId, amount: u64, expires_at_ms: i64) {
        self.remove(lease, None);
        self.insert_absent(lease, amount, expires_at_ms);
    }

    /// Adds an indexed reservation for a lease not indexed here: at the back of the queue
    /// when it expires no earlier than the queue's last entry, else among the stragglers.
    fn insert_absent(&mut self, lease: LeaseId, amount: u64, at: i64) {
        if self.goes_last(at) {
            let seq = self.push_last(lease, amount, at, SlotState::Indexed);
            self.in_queue.insert(lease, seq);
        } else {
            let key = self.add_straggler(lease, amount, at);
            self.straggler_of.insert(lease, key);
        }
    }

    /// Whether a reservation expiring at `at` keeps the queue in order at its back.
    fn goes_last(&self, at: i64) -> bool {
        self.queue.back().map_or(true, |last| last.at <= at)
    }

    /// Appends a reservation to the queue; answers its sequence number.
    fn push_last(&mut self, lease: LeaseId, amount: u64, at: i64, state: SlotState) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Slot {
            at,
            lease,
            amount,
            seq,
            state,
        });
        self.in_use = self.in_use.saturating_add(amount);
        seq
    }

    /// Adds a straggler (not indexed); answers its key.
    fn add_straggler(&mut self, lease: LeaseId, amount: u64, at: i64) -> StragglerKey {
        let key = (at, self.next_straggler);
        self.next_straggler += 1;
        self.stragglers.insert(
            key,
            Straggler {
                lease,
                amount,
                settled: false,
            },
        );
        self.in_use = self.in_use.saturating_add(amount);
        key
    }

    /// Where `lease`'s reservation is: at `place` if given (and still `lease`'s there),
    /// else through the index by lease.
    fn find(&self, lease: LeaseId, place: Option<Place>) -> Option<Found> {
        let spot = match place {
            Some(Place(spot)) => spot,
            None => match self.in_queue.get(&lease) {
                Some(&seq) => Spot::Queue(seq),
                None => Spot::Straggler(*self.straggler_of.get(&lease)?),
            },
        };
        match spot {
            Spot::Queue(seq) => {
                let index = self.index_of(seq)?;
                let slot = &self.queue[index];
                (slot.findable() && slot.lease == lease).then_some(Found::Queue(index))
            }
            Spot::Straggler(key) => {
                let straggler = self.stragglers.get(&key)?;
                (!straggler.settled && straggler.lease == lease).then_some(Found::Straggler(key))
            }
        }
    }

    /// Where the slot of sequence number `seq` sits in the queue. Sequence numbers rise
    /// along the queue and skip only what was compacted or popped away, so the slot is at
    /// most `seq - first` from the front and at most `last - seq` from the back: exactly
    /// there when nothing between was dropped, else found by binary search between the
    /// two (a recent reservation, the usual case, lies within a few slots of the back).
    fn index_of(&self, seq: u64) -> Option<usize> {
        let (first, last) = (self.queue.front()?.seq, self.queue.back()?.seq);
        if seq < first || seq > last {
            return None;
        }
        let last_index = self.queue.len() - 1;
        let from_front = usize::try_from(seq - first).map_or(last_index, |d| d.min(last_index));
        let from_back = usize::try_from(last - seq).map_or(0, |d| last_index.saturating_sub(d));
        let (mut low, mut high) = (from_back, from_front);
        if self.queue[high].seq == seq {
            return Some(high);
        }
        // Invariant: if present, the slot is within low..=high.
        while low <= high {
            let mid = low + (high - low) / 2;
            match self.queue[mid].seq.cmp(&seq) {
                std::cmp::Ordering::Equal => return Some(mid),
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid.checked_sub(1)?,
            }
        }
        None
    }

    /// `lease`'s reservation here (at `place`, or indexed when `None`), as (expiry, amount).
    pub fn get(&self, lease: LeaseId, place: Option<Place>) -> Option<(i64, u64)> {
        match self.find(lease, place)? {
            Found::Queue(index) => {
                let slot = &self.queue[index];
                Some((slot.at, slot.amount))
            }
            Found::Straggler(key) => self.stragglers.get(&key).map(|s| (key.0, s.amount)),
        }
    }

    /// Settles `lease`'s reservation (at `place`, or indexed when `None`) at `amount` (at
    /// most what it holds), keeping its expiry and place in the order: the lease's call is
    /// over, so the reservation only waits for its expiry and is found no more. A queued
    /// one joins a settled neighbour expiring at the same millisecond, so a busy key keeps
    /// one slot per millisecond rather than one per call. `amount` 0 removes it. No-op for a
    /// reservation not found.
    pub fn settle(&mut self, lease: LeaseId, place: Option<Place>, amount: u64) {
        if let Some(found) = self.find(lease, place) {
            self.settle_found(lease, found, amount);
        }
    }

    /// Settles `lease`'s reservation (at `place`, or indexed when `None`) at `actual` if it
    /// holds at least that much, as [`Reservations::settle`] does; if it holds less, removes
    /// it as [`Reservations::remove`] does and says what it held (for the caller to add the
    /// overage). `None` when not found (expired, or never here). One lookup either way.
    pub fn settle_within(
        &mut self,
        lease: LeaseId,
        place: Option<Place>,
        actual: u64,
    ) -> Option<Settled> {
        let found = self.find(lease, place)?;
        let (expires_at_ms, held) = match found {
            Found::Queue(index) => (self.queue[index].at, self.queue[index].amount),
            Found::Straggler(key) => (key.0, self.stragglers.get(&key)?.amount),
        };
        if actual <= held {
            self.settle_found(lease, found, actual);
            return Some(Settled::InPlace);
        }
        self.remove_found(lease, found);
        Some(Settled::Removed {
            expires_at_ms,
            held,
        })
    }

    fn settle_found(&mut self, lease: LeaseId, found: Found, amount: u64) {
        if amount == 0 {
            self.remove_found(lease, found);
            return;
        }
        match found {
            Found::Queue(index) => self.settle_queued(index, amount),
            Found::Straggler(key) => {
                self.unindex_straggler(lease, key);
                if let Some(straggler) = self.stragglers.get_mut(&key) {
                    let freed = straggler.amount.saturating_sub(amount);
                    straggler.amount -= freed;
                    straggler.settled = true;
                    self.release_amount(freed);
                }
            }
        }
    }

    fn settle_queued(&mut self, index: usize, amount: u64) {
        let slot = &mut self.queue[index];
        if slot.state == SlotState::Indexed {
            self.in_queue.remove(&slot.lease);
        }
        let freed = slot.amount.saturating_sub(amount);
        slot.amount -= freed;
        slot.state = SlotState::Settled;
        let (at, kept) = (slot.at, slot.amount);
        self.release_amount(freed);
        let neighbour = index
            .checked_sub(1)
            .and_then(|i| self.queue.get_mut(i))
            .filter(|s| s.state == SlotState::Settled && s.at == at);
        if let Some(neighbour) = neighbour {
            neighbour.amount = neighbour.amount.saturating_add(kept);
            self.make_hole(index);
        }
    }

    /// Turns the slot at `index` into a hole (its amount already accounted for), dropping
    /// holes at either end and compacting when they outnumber live entries.
    fn make_hole(&mut self, index: usize) {
        self.queue[index].state = SlotState::Hole;
        self.holes += 1;
        self.drop_leading_holes();
        self.drop_trailing_holes();
        self.compact_if_mostly_holes();
    }

    /// Drops `lease`'s index entry if it names the straggler at `key` (a placed straggler is
    /// not indexed; its lease may be, for another reservation).
    fn unindex_straggler(&mut self, lease: LeaseId, key: StragglerKey) {
        if self.straggler_of.get(&lease) == Some(&key) {
            self.straggler_of.remove(&lease);
        }
    }

    /// Removes `lease`'s reservation (at `place`, or indexed when `None`); returns its
    /// (expiry, amount).
    pub fn remove(&mut self, lease: LeaseId, place: Option<Place>) -> Option<(i64, u64)> {
        let found = self.find(lease, place)?;
        self.remove_found(lease, found)
    }

    fn remove_found(&mut self, lease: LeaseId, found: Found) -> Option<(i64, u64)> {
        let removed = match found {
            Found::Queue(index) => {
                let slot = self.queue[index];
                if slot.state == SlotState::Indexed {
                    self.in_queue.remove(&lease);
                }
                self.make_hole(index);
                (slot.at, slot.amount)
            }
            Found::Straggler(key) => {
                self.unindex_straggler(lease, key);
                (key.0, self.stragglers.remove(&key)?.amount)
            }
        };
        self.release_amount(removed.1);
        Some(removed)
    }

    /// Rebuilds the queue without holes once they outnumber live entries (sequence numbers
    /// are kept, so places and the index stay valid).
    fn compact_if_mostly_holes(&mut self) {
        if self.holes < MIN_HOLES_TO_COMPACT || self.holes * 2 <= self.queue.len() {
            return;
        }
        self.queue.retain(|slot| slot.state != SlotState::Hole);
        self.holes = 0;
    }

    /// Every live reservation as (lease, amount, expires at), in expiry order.
    pub fn iter(&self) -> impl Iterator<Item = (LeaseId, u64, i64)> + '_ {
        let mut queue = self
            .queue
            .iter()
            .filter_map(|s| s.held().map(|amount| (s.lease, amount, s.at)))
            .peekable();
        let mut stragglers = self
            .stragglers
            .iter()
            .map(|(&(at, _), s)| (s.lease, s.amount, at))
            .peekable();
        std::iter::from_fn(move || match (queue.peek(), stragglers.peek()) {
            (Some(q), Some(s)) if s.2 < q.2 => stragglers.next(),
            (Some(_), _) => queue.next(),
            (None, _) => stragglers.next(),
        })
    }

    /// When the earliest live reservation expires.
    pub fn earliest_expiry_ms(&self) -> Option<i64> {
        let queue = self.queue.front().map(|s| s.at);
        let straggler = self.stragglers.keys().next().map(|&(at, _)| at);
        match (queue, straggler) {
            (Some(q), Some(s)) => Some(q.min(s)),
            (q, s) => q.or(s),
        }
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
        for (_, held, at) in self.iter() {
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

    /// One step of the model-based test.
    #[derive(Debug, Clone)]
    enum Op {
        /// Indexed insert for lease `l` (merging).
        Insert(usize, u64, i64),
        /// Placed insert for lease `l`.
        InsertPlaced(usize, u64, i64),
        /// Indexed replace for lease `l`.
        Replace(usize, u64, i64),
        /// Removes the n-th findable entry.
        Remove(usize),
        /// Settles the n-th findable entry.
        Settle(usize, u64),
        Expire(i64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // Eight leases, so the same ones come back (merges, a lease holding both an indexed
        // and placed entries, a settled lease reserving again); expiries mostly rising,
        // sometimes earlier (stragglers), often the same millisecond (settled slots
        // joining).
        prop_oneof![
            2 => (0..8usize, 1..20u64, 0..200i64).prop_map(|(l, a, t)| Op::Insert(l, a, t)),
            3 => (0..8usize, 1..20u64, 0..200i64).prop_map(|(l, a, t)| Op::InsertPlaced(l, a, t)),
            1 => (0..8usize, 1..20u64, 0..200i64).prop_map(|(l, a, t)| Op::Replace(l, a, t)),
            3 => (0..64usize).prop_map(Op::Remove),
            3 => (0..64usize, 0..20u64).prop_map(|(n, a)| Op::Settle(n, a)),
            1 => (0..200i64).prop_map(Op::Expire),
        ]
    }

    /// How a model entry is found.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum How {
        Indexed,
        Placed(Place),
        /// Settled; found no more (through the place it had, if any).
        Settled(Option<Place>),
    }

    /// The model: a plain list of (lease, amount, expiry, how it is found).
    type Model = Vec<(LeaseId, u64, i64, How)>;

    /// The place to look a findable model entry up with.
    fn place_of(how: How) -> Option<Place> {
        match how {
            How::Placed(place) => Some(place),
            How::Indexed | How::Settled(_) => None,
        }
    }

    fn findable(model: &Model) -> Vec<usize> {
        (0..model.len())
            .filter(|&i| !matches!(model[i].3, How::Settled(_)))
            .collect()
    }

    proptest::proptest! {
        /// Against a plain list of reservations: the same amounts found by lease or place, the
        /// same amount expiring at each millisecond, in expiry order, after any sequence of
        /// operations. Settled reservations are found no more.
        #[test]
        fn behaves_like_a_plain_list(ops in proptest::collection::vec(op(), 0..300)) {
            let leases: Vec<LeaseId> = (0..8).map(|_| LeaseId::new()).collect();
            let mut r = Reservations::new();
            let mut model: Model = Vec::new();
            let mut now = 0i64;
            for op in ops {
                match op {
                    Op::Insert(l, amount, t) => {
                        let at = now + t;
                        r.insert(leases[l], amount, at);
                        match model.iter_mut().find(|e| e.0 == leases[l] && e.3 == How::Indexed) {
                            Some(e) => { e.1 += amount; e.2 = e.2.max(at); }
                            None => model.push((leases[l], amount, at, How::Indexed)),
                        }
                    }
                    Op::InsertPlaced(l, amount, t) => {
                        let place = r.insert_placed(leases[l], amount, now + t);
                        model.push((leases[l], amount, now + t, How::Placed(place)));
                    }
                    Op::Replace(l, amount, t) => {
                        r.replace(leases[l], amount, now + t);
                        model.retain(|e| !(e.0 == leases[l] && e.3 == How::Indexed));
                        model.push((leases[l], amount, now + t, How::Indexed));
                    }
                    Op::Remove(n) => {
                        let live = findable(&model);
                        if let Some(&i) = live.get(n % live.len().max(1)) {
                            let (lease, amount, at, how) = model.remove(i);
                            proptest::prop_assert_eq!(r.remove(lease, place_of(how)), Some((at, amount)));
                            if let How::Placed(place) = how {
                                proptest::prop_assert_eq!(r.remove(lease, Some(place)), None);
                            }
                        }
                    }
                    Op::Settle(n, amount) => {
                        let live = findable(&model);
                        if let Some(&i) = live.get(n % live.len().max(1)) {
                            let (lease, _, _, how) = model[i];
                            r.settle(lease, place_of(how), amount);
                            if amount == 0 {
                                model.remove(i);
                            } else {
                                model[i].1 = model[i].1.min(amount);
                                model[i].3 = How::Settled(place_of(how));
                            }
                        }
                    }
                    Op::Expire(t) => {
                        now = now.max(t);
                        r.expire(now);
                        model.retain(|e| e.2 > now);
                    }
                }
                let got: Vec<_> = r.iter().collect();
                // In expiry order, with the same amount expiring at each millisecond.
                proptest::prop_assert!(got.windows(2).all(|w| w[0].2 <= w[1].2));
                let by_expiry = |entries: &mut dyn Iterator<Item = (u64, i64)>| {
                    let mut sums = std::collections::BTreeMap::new();
                    for (amount, at) in entries {
                        *sums.entry(at).or_insert(0u64) += amount;
                    }
                    sums
                };
                proptest::prop_assert_eq!(
                    by_expiry(&mut got.iter().map(|e| (e.1, e.2))),
                    by_expiry(&mut model.iter().map(|e| (e.1, e.2)))
                );
                proptest::prop_assert_eq!(r.in_use(), model.iter().map(|e| e.1).sum::<u64>());
                proptest::prop_assert_eq!(r.earliest_expiry_ms(), model.iter().map(|e| e.2).min());
                proptest::prop_assert_eq!(r.is_empty(), model.is_empty());
                for &lease in &leases {
                    let indexed = model.iter().find(|e| e.0 == lease && e.3 == How::Indexed);
                    proptest::prop_assert_eq!(r.get(lease, None), indexed.map(|e| (e.2, e.1)));
                }
                for &(lease, amount, at, how) in &model {
                    match how {
                        How::Placed(place) => {
                            proptest::prop_assert_eq!(r.get(lease, Some(place)), Some((at, amount)));
                        }
                        How::Settled(Some(place)) => {
                            proptest::prop_assert_eq!(r.get(lease, Some(place)), None);
                        }
                        How::Indexed | How::Settled(None) => {}
                    }
                }
            }
        }
    }

    #[test]
    fn removals_leave_holes_that_are_compacted_away_and_places_survive() {
        let mut r = Reservations::new();
        let leases: Vec<LeaseId> = (0..1000).map(|_| LeaseId::new()).collect();
        let places: Vec<Place> = leases
            .iter()
            .enumerate()
            .map(|(i, lease)| r.insert_placed(*lease, 1, 1000 + i as i64))
            .collect();
        // Every lease but the first and the last removed: the queue never holds more than
        // twice its live entries (plus the compaction threshold).
        for (i, lease) in leases.iter().enumerate().take(999).skip(1) {
            assert_eq!(
                r.remove(*lease, Some(places[i])),
                Some((1000 + i as i64, 1))
            );
            let live = r.queue.iter().filter(|s| s.held().is_some()).count();
            assert!(r.queue.len() <= 2 * live + MIN_HOLES_TO_COMPACT);
        }
        assert!(r.queue.len() < 100, "compacted: {}", r.queue.len());
        assert_eq!(r.in_use(), 2);
        assert_eq!(r.get(leases[999], Some(places[999])), Some((1999, 1)));
        // A place names one lease's reservation only.
        assert_eq!(r.get(leases[0], Some(places[999])), None);
        r.remove(leases[0], Some(places[0]));
        assert_eq!(r.queue.len(), 1, "leading holes are dropped");
        assert_eq!(r.earliest_expiry_ms(), Some(1999));
    }

    #[test]
    fn a_settled_lease_keeps_its_expiry_and_place_out_of_reach_by_lease() {
        let (mut r, leases) = with(&[(5, 1000), (3, 3000)]);
        // Never grows; an unknown lease is left alone.
        r.settle(leases[0], None, 7);
        r.settle(LeaseId::new(), None, 1);
        assert_eq!(r.in_use(), 8);
        r.settle(leases[1], None, 2);
        assert_eq!(r.in_use(), 7);
        assert_eq!(
            r.get(leases[1], None),
            None,
            "settled: no longer found by lease"
        );
        assert_eq!(r.remove(leases[1], None), None);
        // The same lease reserving again is a reservation of its own.
        r.insert(leases[1], 4, 4000);
        assert_eq!(r.remove(leases[1], None), Some((4000, 4)));
        assert_eq!(r.earliest_expiry_ms(), Some(1000));
        r.expire(1000);
        assert_eq!(r.in_use(), 2);
        r.expire(3000);
        assert!(r.is_empty());
    }

    #[test]
    fn settled_calls_of_one_millisecond_share_one_slot() {
        let mut r = Reservations::new();
        for i in 0..1000 {
            let lease = LeaseId::new();
            let place = r.insert_placed(lease, 10, 5000 + i / 100);
            r.settle(lease, Some(place), 3);
        }
        // Ten milliseconds, ten slots, nothing indexed by lease.
        assert_eq!(r.queue.len(), 10);
        assert!(r.in_queue.is_empty());
        assert_eq!(r.in_use(), 3000);
        assert_eq!(r.wait_until_fits_ms(301, 3000, 0), Some(5001));
        r.expire(5004);
        assert_eq!(r.in_use(), 1500);
    }

    #[test]
    fn a_merged_lease_keeps_the_later_expiry() {
        let (mut r, leases) = with(&[(2, 1000), (3, 3000)]);
        r.insert(leases[0], 1, 4000);
        assert_eq!(r.in_use(), 6);
        assert_eq!(r.remove(leases[0], None), Some((4000, 3)));
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

    #[test]
    fn placed_reservations_are_never_merged_nor_indexed() {
        let mut r = Reservations::new();
        let lease = LeaseId::new();
        let first = r.insert_placed(lease, 2, 1000);
        // An earlier expiry: a straggler, found through its place too.
        let second = r.insert_placed(lease, 3, 500);
        assert_eq!(r.in_use(), 5);
        assert_eq!(r.get(lease, None), None);
        assert_eq!(r.get(lease, Some(second)), Some((500, 3)));
        assert_eq!(r.remove(lease, Some(first)), Some((1000, 2)));
        assert_eq!(r.get(lease, Some(second)), Some((500, 3)));
        r.expire(500);
        assert_eq!(r.get(lease, Some(second)), None);
        assert!(r.is_empty());
    }

    #[test]
    fn settle_within_keeps_what_fits_in_place_and_removes_what_does_not() {
        let mut r = Reservations::new();
        let (small, large, gone) = (LeaseId::new(), LeaseId::new(), LeaseId::new());
        let small_at = r.insert_placed(small, 5, 1000);
        r.insert(large, 4, 1200);
        // A straggler (earlier than the queue's back) settles the same way.
        let straggler = r.insert_placed(gone, 6, 800);
        assert_eq!(r.in_use(), 15);
        assert_eq!(
            r.settle_within(small, Some(small_at), 3),
            Some(Settled::InPlace)
        );
        assert_eq!(r.in_use(), 13);
        assert_eq!(r.get(small, Some(small_at)), None, "settled: found no more");
        assert_eq!(
            r.settle_within(large, None, 9),
            Some(Settled::Removed {
                expires_at_ms: 1200,
                held: 4
            })
        );
        assert_eq!(r.in_use(), 9);
        assert_eq!(r.settle_within(large, None, 9), None);
        assert_eq!(
            r.settle_within(gone, Some(straggler), 0),
            Some(Settled::InPlace)
        );
        assert_eq!(r.in_use(), 3);
        r.expire(1000);
        assert!(r.is_empty());
    }
}
