//! Lease ids made in process ([`new_lease_id`]) and the part of a split lease table that
//! keeps a lease ([`lease_part`]).
//!
//! A lease table split into parts by lease id lets callers on several threads work at once.
//! But a part chosen by random bits is written by every thread in turn, and its memory (its
//! lock, counts and queues) then moves from core to core at nearly every call. An id made by
//! [`new_lease_id`] names, in its lowest bits, the part its thread is on now. Each thread has
//! its own starting part, and every thread moves on to its next part at the same moments (a
//! stretch of the id's own milliseconds), so threads with different starting parts never
//! write the same part, however unequal their speeds; over time every part gets its share (a
//! table keeps a share of its settled leases in each part). Any other id, such as one an
//! HTTP client chose, lands in a part by its random bits, as before: only speed differs.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::LeaseId;

/// The most parts a lease table is split into; a table's part count divides it.
pub(crate) const MAX_LEASE_PARTS: usize = 16;

/// Milliseconds (of the ids' time) a thread stays in one part before it moves on to the next.
const MS_PER_STRETCH: u64 = 4;

/// Between the starting parts of threads that make their first id one after the other: odd,
/// so that they differ in any power-of-two count of parts.
const START_STRIDE: usize = 7;

/// Threads that have made an id so far (each takes the next starting part).
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's starting part, taken when it makes its first id.
    static START: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A new lease id: a ULID (time and random bits) whose lowest bits name the lease-table part
/// this thread is on, so that callers on different threads mostly keep their leases in
/// different parts. Use it for the ids of reserves made in process.
pub fn new_lease_id() -> LeaseId {
    let start = START.with(|start| match start.get() {
        Some(part) => part,
        None => {
            let part = start_part(THREADS.fetch_add(1, Ordering::Relaxed));
            start.set(Some(part));
            part
        }
    });
    let id = LeaseId::new();
    let part = walk_part(start, id.timestamp_ms());
    LeaseId::from(u128::from(id) & !(MAX_LEASE_PARTS as u128 - 1) | part as u128)
}

/// Where the walk of the `thread`-th thread to make an id starts.
fn start_part(thread: usize) -> usize {
    thread.wrapping_mul(START_STRIDE) % MAX_LEASE_PARTS
}

/// The part a walk from `start` is on at `ms` (an id's time).
fn walk_part(start: usize, ms: u64) -> usize {
    (start + (ms / MS_PER_STRETCH % MAX_LEASE_PARTS as u64) as usize) % MAX_LEASE_PARTS
}

/// Which of `parts` parts keeps `lease`: its lowest bits. `parts` is a power of two of at
/// most [`MAX_LEASE_PARTS`], so an id from [`new_lease_id`] lands in its thread's part.
pub(crate) fn lease_part(lease: LeaseId, parts: usize) -> usize {
    debug_assert!(parts.is_power_of_two() && parts <= MAX_LEASE_PARTS);
    (u128::from(lease) as usize) & (parts.max(1) - 1)
}

/// The largest power of two not above `wanted`, between 1 and [`MAX_LEASE_PARTS`]: the part
/// count of a table that would like `wanted` parts.
pub(crate) fn lease_parts(wanted: usize) -> usize {
    let wanted = wanted.clamp(1, MAX_LEASE_PARTS);
    1 << (usize::BITS - 1 - wanted.leading_zeros())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_thread_is_on_its_walks_part_at_each_ids_time() {
        // A new thread: it takes its starting part with its first id.
        let (start, ids) = std::thread::spawn(|| {
            let first = new_lease_id();
            let start = START.with(Cell::get).expect("the first id took a start");
            let deadline = first.timestamp_ms() + MS_PER_STRETCH * (MAX_LEASE_PARTS as u64 + 1);
            let mut ids = vec![first];
            // Bounded by the clock: one lap of the walk and one stretch more.
            while ids.last().map_or(0, LeaseId::timestamp_ms) < deadline {
                ids.push(new_lease_id());
            }
            (start, ids)
        })
        .join()
        .unwrap();
        for id in &ids {
            let part = lease_part(*id, MAX_LEASE_PARTS);
            assert_eq!(part, walk_part(start, id.timestamp_ms()));
        }
        let last = ids.last().map_or(0, LeaseId::timestamp_ms);
        assert!(
            last >= ids[0].timestamp_ms() + MS_PER_STRETCH,
            "the walk moved on"
        );
    }

    #[test]
    fn the_walk_moves_to_the_next_part_each_stretch_and_wraps_around() {
        assert_eq!(walk_part(3, 0), 3);
        assert_eq!(walk_part(3, MS_PER_STRETCH - 1), 3);
        assert_eq!(walk_part(3, MS_PER_STRETCH), 4);
        assert_eq!(walk_part(15, MS_PER_STRETCH - 1), 15);
        assert_eq!(walk_part(15, MS_PER_STRETCH), 0, "the walk wraps around");
        assert_eq!(
            walk_part(15, u64::MAX),
            (15 + (u64::MAX / MS_PER_STRETCH % 16) as usize) % 16
        );
    }

    #[test]
    fn threads_with_different_starts_are_never_on_one_part_at_once() {
        for parts in [2, 4, 8, 16] {
            for ms in (0..4 * MAX_LEASE_PARTS as u64 * MS_PER_STRETCH).chain([u64::MAX - 1]) {
                for (a, b) in [(0, 1), (0, 7), (5, 12), (14, 15)] {
                    if a % parts == b % parts {
                        continue;
                    }
                    assert_ne!(
                        walk_part(a, ms) % parts,
                        walk_part(b, ms) % parts,
                        "starts {a} and {b}, {parts} parts, at {ms} ms"
                    );
                }
            }
        }
    }

    #[test]
    fn threads_that_start_one_after_the_other_start_in_different_parts() {
        for thread in 0..64 {
            for parts in [2, 4, 8, 16] {
                let (a, b) = (start_part(thread), start_part(thread + 1));
                assert_ne!(
                    a % parts,
                    b % parts,
                    "threads {thread} and next, {parts} parts"
                );
            }
        }
    }

    #[test]
    fn ids_stay_unique_and_keep_their_time() {
        let before = LeaseId::new().timestamp_ms();
        let ids: HashSet<LeaseId> = (0..10_000).map(|_| new_lease_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.timestamp_ms() >= before));
    }

    #[test]
    fn any_id_lands_in_the_part_of_its_lowest_bits() {
        let id = LeaseId::from(0x1234_5678_9abc_def0_0fed_cba9_8765_4327u128);
        assert_eq!(lease_part(id, 1), 0);
        assert_eq!(lease_part(id, 2), 1);
        assert_eq!(lease_part(id, 8), 7);
        assert_eq!(lease_part(id, 16), 7);
    }

    #[test]
    fn a_table_gets_the_largest_power_of_two_parts_it_asked_for() {
        assert_eq!(lease_parts(0), 1);
        assert_eq!(lease_parts(1), 1);
        assert_eq!(lease_parts(3), 2);
        assert_eq!(lease_parts(15), 8);
        assert_eq!(lease_parts(16), 16);
        assert_eq!(lease_parts(usize::MAX), MAX_LEASE_PARTS);
    }
}
