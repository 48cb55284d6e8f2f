//! [`spin_for`]: looking for something another core is about to provide, for a moment,
//! before giving up the thread. A drain or a lock hold takes microseconds, while sleeping
//! and being woken from another thread costs far more.

use std::time::{Duration, Instant};

/// Calls `attempt` until it answers `Some`, pausing `pauses` spin-loop hints between calls,
/// for at most `limit`; `None` when it never did. The clock is read only once the first
/// attempt has failed.
pub(crate) fn spin_for<T>(
    limit: Duration,
    pauses: usize,
    mut attempt: impl FnMut() -> Option<T>,
) -> Option<T> {
    let mut start = None;
    loop {
        if let Some(found) = attempt() {
            return Some(found);
        }
        if start.get_or_insert_with(Instant::now).elapsed() > limit {
            return None;
        }
        for _ in 0..pauses {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_what_an_attempt_finds_and_gives_up_after_the_limit() {
        let mut calls = 0;
        let found = spin_for(Duration::from_secs(5), 1, || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
        let start = Instant::now();
        assert_eq!(spin_for(Duration::from_millis(2), 8, || None::<()>), None);
        assert!(start.elapsed() >= Duration::from_millis(2));
    }
}
