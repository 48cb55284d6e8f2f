//! The simulator's own provider limits: requests and tokens per window, and requests in
//! flight, enforced like a real provider: an exact sliding window counted from each
//! request's **arrival**. A request that arrived at `t` counts against every request
//! arriving in `[t, t + window]` — one arriving exactly at the window's edge is still
//! refused — and leaves the window just after. A request is charged
//! `prompt_tokens + max_tokens` when admitted (as OpenAI estimates) and reconciled to the
//! tokens it really used when it finishes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The default window of the request and token limits (a minute: RPM and TPM).
pub const WINDOW: Duration = Duration::from_secs(60);

/// Configured limits; `None` = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimLimits {
    /// Requests per window (per minute by default).
    pub rpm: Option<u64>,
    /// Tokens per window (per minute by default).
    pub tpm: Option<u64>,
    /// Requests in flight.
    pub concurrency: Option<u64>,
    /// The sliding window of `rpm` and `tpm`.
    pub window: Duration,
}

impl Default for SimLimits {
    fn default() -> Self {
        SimLimits {
            rpm: None,
            tpm: None,
            concurrency: None,
            window: WINDOW,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many requests in flight.
    Concurrency,
    /// RPM exhausted.
    Rpm,
    /// TPM exhausted.
    Tpm,
}

impl Refusal {
    /// Short name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Concurrency => "concurrency",
            Refusal::Rpm => "requests per minute",
            Refusal::Tpm => "tokens per minute",
        }
    }
}

struct Entry {
    id: u64,
    at: Instant,
    tokens: u64,
}

/// The live accounting (kept behind a mutex by the server).
pub struct Window {
    limits: SimLimits,
    entries: VecDeque<Entry>,
    next_id: u64,
    in_flight: u64,
    /// Hint for concurrency refusals: about one response latency.
    busy_retry: Duration,
}

impl Window {
    /// An empty window; `busy_retry` is the Retry-After sent for concurrency refusals.
    pub fn new(limits: SimLimits, busy_retry: Duration) -> Window {
        Window {
            limits,
            entries: VecDeque::new(),
            next_id: 0,
            in_flight: 0,
            busy_retry,
        }
    }

    /// Requests currently admitted and not finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Drops the requests that are out of the window at `now`: those that arrived more than
    /// a window ago (one that arrived exactly a window ago still counts).
    fn prune(&mut self, now: Instant) {
        let window = self.limits.window;
        while self
            .entries
            .front()
            .is_some_and(|e| now.duration_since(e.at) > window)
        {
            self.entries.pop_front();
        }
    }

    /// Admits a request charged `tokens`, or says why not and how long to wait.
    pub fn admit(&mut self, now: Instant, tokens: u64) -> Result<u64, (Refusal, Duration)> {
        self.prune(now);
        if let Some(cap) = self.limits.concurrency {
            if self.in_flight >= cap {
                return Err((Refusal::Concurrency, self.busy_retry));
            }
        }
        if let Some(rpm) = self.limits.rpm {
            if self.entries.len() as u64 >= rpm {
                // The request fits once the (len - rpm + 1) oldest entries have expired.
                let index = self.entries.len() - usize::try_from(rpm).unwrap_or(usize::MAX);
                return Err((Refusal::Rpm, self.wait_for(now, index)));
            }
        }
        if let Some(tpm) = self.limits.tpm {
            let used: u64 = self.entries.iter().map(|e| e.tokens).sum();
            if used.saturating_add(tokens) > tpm {
                // Wait until enough of the oldest entries expire to fit the request.
                let mut freed = 0u64;
                let need = used.saturating_add(tokens) - tpm;
                let mut index = self.entries.len().saturating_sub(1);
                for (i, e) in self.entries.iter().enumerate() {
                    freed = freed.saturating_add(e.tokens);
                    if freed >= need {
                        index = i;
                        break;
                    }
                }
                return Err((Refusal::Tpm, self.wait_for(now, index)));
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_back(Entry {
            id,
            at: now,
            tokens,
        });
        self.in_flight += 1;
        Ok(id)
    }

    /// Time until entry `index` has left the window (just past its edge, at least 1 ms).
    fn wait_for(&self, now: Instant, index: usize) -> Duration {
        let at = self.entries.get(index).map(|e| e.at).unwrap_or(now);
        (at + self.limits.window + Duration::from_millis(1))
            .saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    /// Ends an admitted request, reconciling its charge to `actual_tokens`.
    pub fn finish(&mut self, id: u64, actual_tokens: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            entry.tokens = actual_tokens;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_refuses_until_the_oldest_request_leaves_the_window() {
        let mut w = Window::new(
            SimLimits {
                rpm: Some(2),
                ..SimLimits::default()
            },
            Duration::from_millis(5),
        );
        let t0 = Instant::now();
        let a = w.admit(t0, 1).unwrap();
        w.finish(a, 1);
        let b = w.admit(t0 + Duration::from_secs(10), 1).unwrap();
        w.finish(b, 1);
        let (why, wait) = w.admit(t0 + Duration::from_secs(20), 1).unwrap_err();
        assert_eq!(why, Refusal::Rpm);
        assert_eq!(wait, Duration::from_millis(40_001));
        // At the window's edge the oldest request still counts; just past it, it is gone.
        assert_eq!(w.admit(t0 + WINDOW, 1).unwrap_err().0, Refusal::Rpm);
        assert!(w.admit(t0 + WINDOW + Duration::from_millis(1), 1).is_ok());
    }

    #[test]
    fn the_sliding_window_counts_from_arrival_and_refuses_at_its_edge() {
        let window = Duration::from_secs(10);
        let mut w = Window::new(
            SimLimits {
                rpm: Some(2),
                window,
                ..SimLimits::default()
            },
            Duration::from_millis(5),
        );
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Two arrivals 300 ms apart fill the window.
        for at in [t0, t0 + ms(300)] {
            let id = w.admit(at, 1).unwrap();
            w.finish(id, 1);
        }
        // One millisecond before and exactly at the first arrival's edge: refused, and told
        // to come back just past the edge.
        let (why, wait) = w.admit(t0 + window - ms(1), 1).unwrap_err();
        assert_eq!((why, wait), (Refusal::Rpm, ms(2)));
        let (_, wait) = w.admit(t0 + window, 1).unwrap_err();
        assert_eq!(wait, ms(1));
        // Just past it the first arrival is gone, the second still counts.
        let id = w.admit(t0 + window + ms(1), 1).unwrap();
        w.finish(id, 1);
        assert_eq!(
            w.admit(t0 + window + ms(300), 1).unwrap_err().0,
            Refusal::Rpm
        );
        assert!(w.admit(t0 + window + ms(301), 1).is_ok());
    }

    #[test]
    fn tpm_charges_the_estimate_then_reconciles() {
        let mut w = Window::new(
            SimLimits {
                tpm: Some(100),
                ..SimLimits::default()
            },
            Duration::from_millis(5),
        );
        let t0 = Instant::now();
        let a = w.admit(t0, 80).unwrap();
        assert_eq!(w.admit(t0, 30).unwrap_err().0, Refusal::Tpm);
        w.finish(a, 20);
        assert!(w.admit(t0, 30).is_ok());
    }

    #[test]
    fn concurrency_counts_requests_in_flight() {
        let mut w = Window::new(
            SimLimits {
                concurrency: Some(1),
                ..SimLimits::default()
            },
            Duration::from_millis(7),
        );
        let t0 = Instant::now();
        let a = w.admit(t0, 1).unwrap();
        assert_eq!(
            w.admit(t0, 1).unwrap_err(),
            (Refusal::Concurrency, Duration::from_millis(7))
        );
        w.finish(a, 1);
        assert!(w.admit(t0, 1).is_ok());
    }
}
