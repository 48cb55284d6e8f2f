//! [`LogThrottle`]: at most one log line per interval for a condition that may repeat on
//! every request, with a count of the occurrences held back in between.

/// Decides when a repeating condition is logged again.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    interval_ms: i64,
    last_ms: Option<i64>,
    held_back: u64,
}

impl LogThrottle {
    /// At most one line every `interval_ms`.
    pub fn new(interval_ms: i64) -> Self {
        LogThrottle {
            interval_ms,
            last_ms: None,
            held_back: 0,
        }
    }

    /// Records one occurrence at `now_ms` (a monotonic time). `Some(n)` if a line is due now,
    /// `n` being how many occurrences were not logged since the last line; `None` otherwise.
    pub fn due(&mut self, now_ms: i64) -> Option<u64> {
        let due = match self.last_ms {
            None => true,
            Some(last) => now_ms.saturating_sub(last) >= self.interval_ms,
        };
        if !due {
            self.held_back += 1;
            return None;
        }
        self.last_ms = Some(now_ms);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let mut throttle = LogThrottle::new(60_000);
        assert_eq!(throttle.due(5), Some(0));
        assert_eq!(throttle.due(6), None);
        assert_eq!(throttle.due(60_004), None);
        assert_eq!(throttle.due(60_005), Some(2));
        assert_eq!(throttle.due(60_006), None);
        assert_eq!(throttle.due(200_000), Some(1));
    }
}
