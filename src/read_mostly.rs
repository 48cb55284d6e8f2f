//! [`ReadMostly`]: a value read on every request and changed rarely (the key directory, the
//! limit states), kept as one copy per reader slot.
//!
//! A plain read-write lock makes every reader write its lock's count, so readers on several
//! cores pass that cache line back and forth on every request even though nobody changes
//! the value. Here each thread reads the copy of its own slot, behind that slot's lock
//! (threads are spread over the slots as they first read, and the slots outnumber the
//! cores), and a change is applied to every copy in turn. A reader sees each change once
//! its slot has it; the change is complete on every slot when the writer returns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

/// At least this many slots, so that a few busy threads rarely share one.
const MIN_SLOTS: usize = 4;

/// At most this many slots (each holds a whole copy).
const MAX_SLOTS: usize = 64;

/// The slot the next new reader thread takes.
static NEXT_READER: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's reader number, taken when it first reads.
    static READER: usize = NEXT_READER.fetch_add(1, Ordering::Relaxed);
}

/// One copy, on a cache line of its own.
#[derive(Debug)]
#[repr(align(128))]
struct Slot<T>(RwLock<T>);

/// A value copied per reader slot (see the module documentation).
#[derive(Debug)]
pub(crate) struct ReadMostly<T> {
    slots: Box<[Slot<T>]>,
    /// Writers one at a time, so every copy takes the changes in the same order.
    writer: Mutex<()>,
}

impl<T: Clone> ReadMostly<T> {
    /// `value`, copied into at least twice as many slots as the machine has cores (within
    /// bounds; a power of two, so a thread finds its slot without a division).
    pub(crate) fn new(value: T) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_slots(value, (2 * cores).clamp(MIN_SLOTS, MAX_SLOTS))
    }

    fn with_slots(value: T, slots: usize) -> Self {
        ReadMostly {
            slots: (0..slots.max(1).next_power_of_two())
                .map(|_| Slot(RwLock::new(value.clone())))
                .collect(),
            writer: Mutex::new(()),
        }
    }

    /// The value, as this thread's slot holds it.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        let slot = READER.with(|reader| reader & (self.slots.len() - 1));
        self.slots[slot].0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to every copy, one slot at a time.
    pub(crate) fn update(&self, mut change: impl FnMut(&mut T)) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for slot in self.slots.iter() {
            change(&mut slot.0.write().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn every_thread_reads_each_change_once_the_writer_returns() {
        let map = Arc::new(ReadMostly::with_slots(BTreeMap::new(), 3));
        assert_eq!(map.slots.len(), 4, "a power of two");
        for i in 0..5 {
            map.update(|m| {
                m.insert(i, i * 10);
            });
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let map = Arc::clone(&map);
                    std::thread::spawn(move || map.read().get(&i).copied())
                })
                .collect();
            for reader in readers {
                assert_eq!(reader.join().unwrap(), Some(i * 10));
            }
        }
        assert!(map.slots.iter().all(|s| s.0.read().unwrap().len() == 5));
    }
}
