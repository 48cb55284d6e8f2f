//! The known-down state machine, free of I/O and of real time: every method takes "now" in
//! Unix ms, so tests drive it with any clock.
//!
//! - `up` → `down`: a call that was let through fails with `Unavailable`. A call that began
//!   before the last recovery (an older epoch) does not count: it reports the outage that
//!   already ended, not a new one.
//! - while down, calls are not let through; one probe loop at a time checks the backend.
//! - `down` → `up`: the first successful probe; the epoch moves on.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Since when and why the backend is known to be down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Down {
    /// When the failure that marked it down was seen (Unix ms).
    pub since_ms: i64,
    /// The failure.
    pub reason: String,
}

/// A permit to call the backend: the epoch in which the call began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit(u64);

/// What [`Health::admit`] answers while the backend is up, readable without the health
/// lock (every reserve and complete asks): the epoch, or `DOWN`. Published under the lock
/// after each change of the health.
#[derive(Debug, Default)]
pub struct UpEpoch(AtomicU64);

impl UpEpoch {
    const DOWN: u64 = u64::MAX;

    /// The permit of a call beginning now, if the backend is up.
    pub fn permit(&self) -> Option<Permit> {
        let epoch = self.0.load(Ordering::Acquire);
        (epoch != Self::DOWN).then_some(Permit(epoch))
    }

    /// Publishes `health` as it is now (called with its lock held).
    pub fn publish(&self, health: &Health) {
        let epoch = match health.down {
            Some(_) => Self::DOWN,
            None => health.epoch,
        };
        self.0.store(epoch, Ordering::Release);
    }
}

/// The backend's health as the service sees it.
#[derive(Debug, Default)]
pub struct Health {
    down: Option<Down>,
    epoch: u64,
    probing: bool,
}

impl Health {
    /// A permit if the backend is not known to be down, else since when it is.
    pub fn admit(&self) -> Result<Permit, Down> {
        match &self.down {
            Some(down) => Err(down.clone()),
            None => Ok(Permit(self.epoch)),
        }
    }

    /// The outage in progress, if any.
    pub fn down(&self) -> Option<&Down> {
        self.down.as_ref()
    }

    /// A call made with `permit` could not reach the backend. Returns true if this marked
    /// the backend down (false if it was already down, or the call predates a recovery).
    pub fn unavailable(&mut self, permit: Permit, now_ms: i64, reason: &str) -> bool {
        if self.down.is_some() || permit.0 != self.epoch {
            return false;
        }
        self.down = Some(Down {
            since_ms: now_ms,
            reason: reason.to_string(),
        });
        true
    }

    /// Whether a probe loop should start now: the backend is down and no loop runs. The
    /// caller that gets `true` owns the loop until [`Health::probe_loop_ended`].
    pub fn start_probing(&mut self) -> bool {
        if self.down.is_none() || self.probing {
            return false;
        }
        self.probing = true;
        true
    }

    /// A probe answered: the outage ends. Returns it (None if the backend was not down).
    pub fn recovered(&mut self) -> Option<Down> {
        let ended = self.down.take()?;
        self.epoch += 1;
        Some(ended)
    }

    /// The probe loop stopped (recovered, or its task was dropped): another may start.
    pub fn probe_loop_ended(&mut self) {
        self.probing = false;
    }
}

/// At most one log line a second for a repeated event, carrying how many happened.
#[derive(Debug, Default)]
pub struct Throttle {
    last_ms: Option<i64>,
    pending: u64,
}

/// The interval of a [`Throttle`].
pub const LOG_INTERVAL_MS: i64 = 1_000;

impl Throttle {
    /// Counts one event; returns how many to report if a line is due now.
    pub fn record(&mut self, now_ms: i64) -> Option<u64> {
        self.pending += 1;
        match self.last_ms {
            Some(last) if now_ms.saturating_sub(last) < LOG_INTERVAL_MS => None,
            _ => {
                self.last_ms = Some(now_ms);
                Some(std::mem::take(&mut self.pending))
            }
        }
    }

    /// Events counted but not reported yet (reported at the end of an outage).
    pub fn take_pending(&mut self) -> u64 {
        std::mem::take(&mut self.pending)
    }
}

/// Counters of what happened while the backend was down; readable in-process (e.g. by a
/// metrics exporter) through [`OutageCounters::snapshot`].
#[derive(Debug, Default)]
pub struct OutageCounters {
    outages: AtomicU64,
    reserves_refused: AtomicU64,
    reserves_allowed_unaccounted: AtomicU64,
    completes_dropped: AtomicU64,
    admin_refused: AtomicU64,
    probes_failed: AtomicU64,
}

/// A copy of the [`OutageCounters`], all totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutageStats {
    /// Times the backend was marked down.
    pub outages: u64,
    /// Reserves answered `backend_error` at once (policy `deny`).
    pub reserves_refused: u64,
    /// Reserves answered allowed without accounting (policy `allow`).
    pub reserves_allowed_unaccounted: u64,
    /// Completes dropped (their reservations expire by themselves).
    pub completes_dropped: u64,
    /// Admin calls (define, usage, decrease) refused.
    pub admin_refused: u64,
    /// Probes that did not get an answer.
    pub probes_failed: u64,
}

/// Which counter an event adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The backend was marked down.
    Outage,
    /// A reserve answered `backend_error`.
    ReserveRefused,
    /// A reserve allowed without accounting.
    ReserveAllowed,
    /// A complete dropped.
    CompleteDropped,
    /// An admin call refused.
    AdminRefused,
    /// A probe failed.
    ProbeFailed,
}

impl OutageCounters {
    /// Adds one to the counter of `event`.
    pub fn count(&self, event: Event) {
        let counter = match event {
            Event::Outage => &self.outages,
            Event::ReserveRefused => &self.reserves_refused,
            Event::ReserveAllowed => &self.reserves_allowed_unaccounted,
            Event::CompleteDropped => &self.completes_dropped,
            Event::AdminRefused => &self.admin_refused,
            Event::ProbeFailed => &self.probes_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals now.
    pub fn snapshot(&self) -> OutageStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        OutageStats {
            outages: get(&self.outages),
            reserves_refused: get(&self.reserves_refused),
            reserves_allowed_unaccounted: get(&self.reserves_allowed_unaccounted),
            completes_dropped: get(&self.completes_dropped),
            admin_refused: get(&self.admin_refused),
            probes_failed: get(&self.probes_failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_permit_follows_the_health() {
        let (mut health, up) = (Health::default(), UpEpoch::default());
        assert_eq!(up.permit(), health.admit().ok(), "up from the start");
        let permit = health.admit().unwrap();
        health.unavailable(permit, 1_000, "timed out");
        up.publish(&health);
        assert_eq!(up.permit(), None, "down: the lock decides");
        health.recovered();
        up.publish(&health);
        let next = health.admit().unwrap();
        assert_eq!(up.permit(), Some(next));
        assert_ne!(next, permit, "a new epoch after the recovery");
    }

    #[test]
    fn a_failure_marks_down_until_a_probe_answers() {
        let mut health = Health::default();
        let permit = health.admit().unwrap();
        assert!(health.unavailable(permit, 1_000, "timed out"));
        let down = health.admit().unwrap_err();
        assert_eq!(down.since_ms, 1_000);
        assert_eq!(down.reason, "timed out");
        // A second failure of the same outage keeps the first time and reason.
        assert!(!health.unavailable(permit, 1_500, "again"));
        assert_eq!(health.down().unwrap().since_ms, 1_000);
        assert_eq!(health.recovered().unwrap().since_ms, 1_000);
        assert!(health.admit().is_ok());
        assert!(health.recovered().is_none(), "recovering twice is a no-op");
    }

    #[test]
    fn a_call_that_began_before_the_recovery_does_not_mark_down_again() {
        let mut health = Health::default();
        let stale = health.admit().unwrap();
        assert!(health.unavailable(stale, 1, "timed out"));
        health.recovered();
        // A call sent before the outage times out after the recovery: not a new outage.
        assert!(!health.unavailable(stale, 2, "late timeout"));
        assert!(health.admit().is_ok());
        let fresh = health.admit().unwrap();
        assert!(health.unavailable(fresh, 3, "timed out again"));
        assert_eq!(health.down().unwrap().since_ms, 3);
    }

    #[test]
    fn one_probe_loop_at_a_time_and_only_while_down() {
        let mut health = Health::default();
        assert!(!health.start_probing(), "no probing while up");
        let permit = health.admit().unwrap();
        health.unavailable(permit, 0, "refused");
        assert!(health.start_probing());
        assert!(!health.start_probing(), "a loop already runs");
        health.probe_loop_ended();
        assert!(health.start_probing(), "a dropped loop can be replaced");
        health.recovered();
        health.probe_loop_ended();
        assert!(!health.start_probing());
    }

    #[test]
    fn throttle_reports_at_most_once_a_second_with_the_count() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.record(10_000), Some(1));
        assert_eq!(throttle.record(10_100), None);
        assert_eq!(throttle.record(10_999), None);
        assert_eq!(throttle.record(11_000), Some(3));
        assert_eq!(throttle.record(11_001), None);
        assert_eq!(throttle.take_pending(), 1);
        assert_eq!(throttle.take_pending(), 0);
    }

    #[test]
    fn counters_count_each_event_apart() {
        let counters = OutageCounters::default();
        for event in [
            Event::Outage,
            Event::ReserveRefused,
            Event::ReserveRefused,
            Event::ReserveAllowed,
            Event::CompleteDropped,
            Event::AdminRefused,
            Event::ProbeFailed,
        ] {
            counters.count(event);
        }
        let stats = counters.snapshot();
        assert_eq!(
            stats,
            OutageStats {
                outages: 1,
                reserves_refused: 2,
                reserves_allowed_unaccounted: 1,
                completes_dropped: 1,
                admin_refused: 1,
                probes_failed: 1,
            }
        );
    }
}
