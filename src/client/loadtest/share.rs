//! The share of a rolling limit a load test was admitted, window by window: how close to
//! the limit clients that wait exactly the retry-after hints get.
//!
//! The run is cut into consecutive windows of the limit's length from its start; each full
//! window's share is the number of reserves allowed in it over the limit's capacity (the
//! load test measures it with a single target, so every allowed reserve took one unit of
//! that limit).

use std::fmt;
use std::time::Duration;

use crate::model::{LimitKind, LimitState};

/// The rolling limit whose share is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLimit {
    /// The key (for the report).
    pub key: String,
    /// Its capacity per window.
    pub capacity: u64,
    /// Its window.
    pub window: Duration,
}

impl ShareLimit {
    /// The rolling limit `key` among `states`, if defined there.
    pub fn find(states: &[LimitState], key: &str) -> Option<ShareLimit> {
        states
            .iter()
            .map(|s| &s.definition)
            .find(|d| d.kind == LimitKind::Rolling && d.key == key)
            .map(|d| ShareLimit {
                key: d.key.clone(),
                capacity: d.capacity,
                window: Duration::from_secs(d.window_seconds),
            })
    }
}

/// Allowed reserves per full window, as a share of the capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowShares {
    /// The limit.
    pub limit: ShareLimit,
    /// Reserves allowed in each full window, in order.
    pub allowed: Vec<u64>,
}

impl WindowShares {
    /// Counts `allowed_at` (times since the start at which reserves were allowed) into the
    /// full windows of a run of `elapsed`.
    pub fn count(limit: ShareLimit, allowed_at: &[Duration], elapsed: Duration) -> Self {
        let window = limit.window.max(Duration::from_millis(1));
        let full = usize::try_from(elapsed.as_millis() / window.as_millis()).unwrap_or(0);
        let mut allowed = vec![0u64; full];
        for at in allowed_at {
            let index = usize::try_from(at.as_millis() / window.as_millis()).unwrap_or(usize::MAX);
            if let Some(count) = allowed.get_mut(index) {
                *count += 1;
            }
        }
        WindowShares { limit, allowed }
    }

    /// The share of window `index` (1.0 = the whole capacity).
    pub fn share(&self, index: usize) -> f64 {
        let count = self.allowed.get(index).copied().unwrap_or(0);
        count as f64 / self.limit.capacity.max(1) as f64
    }

    /// The smallest share among the windows after the first (the first is admitted at once;
    /// the later ones show how well waiting clients refill a window), or of the first when
    /// it is the only one.
    pub fn steady_min(&self) -> Option<f64> {
        let from = usize::from(self.allowed.len() > 1);
        (from..self.allowed.len())
            .map(|i| self.share(i))
            .min_by(f64::total_cmp)
    }
}

impl fmt::Display for WindowShares {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "share of {} (capacity {} per {} s) admitted per window:",
            self.limit.key,
            self.limit.capacity,
            self.limit.window.as_secs_f64()
        )?;
        if self.allowed.is_empty() {
            return write!(f, " no full window (run longer than one window)");
        }
        for (i, count) in self.allowed.iter().enumerate() {
            write!(f, " {}: {count} ({:.1} %)", i + 1, self.share(i) * 100.0)?;
        }
        if let Some(min) = self.steady_min() {
            write!(
                f,
                "\nsmallest share after the first window: {:.1} %",
                min * 100.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LimitDefinition;

    #[test]
    fn allowed_reserves_are_counted_per_full_window() {
        let limit = ShareLimit {
            key: "k:rpm".into(),
            capacity: 4,
            window: Duration::from_secs(10),
        };
        let at: Vec<Duration> = [0, 1, 2, 3, 10_050, 10_100, 10_200, 19_999, 25_000]
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        let shares = WindowShares::count(limit, &at, Duration::from_millis(26_000));
        assert_eq!(shares.allowed, [4, 4]);
        assert_eq!(shares.share(1), 1.0);
        assert_eq!(shares.steady_min(), Some(1.0));
        assert!(shares.to_string().contains("2: 4 (100.0 %)"));
    }

    #[test]
    fn only_a_rolling_limit_is_measured() {
        let states = vec![
            LimitState::active(LimitDefinition::concurrency(
                "global:llm:p:m:concurrency",
                2,
                30,
            )),
            LimitState::active(LimitDefinition::rolling("global:llm:p:m:rpm", 60, 10)),
        ];
        let limit = ShareLimit::find(&states, "global:llm:p:m:rpm").unwrap();
        assert_eq!(
            (limit.capacity, limit.window),
            (60, Duration::from_secs(10))
        );
        assert_eq!(
            ShareLimit::find(&states, "global:llm:p:m:concurrency"),
            None
        );
    }
}
