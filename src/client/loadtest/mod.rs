//! The load test behind `ratelimiter-loadtest`: `concurrency` loops, each reserving for one
//! synthetic LLM call after another and completing every allowed one, until the duration
//! is over. Counters are shared atomics (read once a second for the progress line);
//! latencies go to per-loop histograms merged at the end, so memory stays fixed.

pub mod share;
pub mod stats;
pub mod targets;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;

pub use share::{ShareLimit, WindowShares};
pub use stats::{parse_duration, DurationError, Histogram, MAX_DURATION};
pub use targets::{generated_definitions, generated_targets, targets_from_states, Target};

use super::limiter::Limiter;
use crate::model::{CompleteRequest, ErrorCode, LeaseId, ReserveRequest};

/// Pause of a loop after an error, so an unreachable limiter is not hammered in a spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// How long the loops start new calls (bounded by [`MAX_DURATION`]).
    pub duration: Duration,
    /// Loops running at once (at least 1).
    pub concurrency: usize,
    /// The providers to spread calls over, round-robin (at least 1).
    pub targets: Vec<Target>,
    /// After a denial, a loop waits the limiter's `retry_after_ms` (as a real client does)
    /// instead of asking again at once.
    pub respect_retry_after: bool,
    /// Measure the share of this rolling limit admitted per window.
    pub share_of: Option<ShareLimit>,
}

#[derive(Debug, Default)]
struct Counters {
    reserves: AtomicU64,
    completes: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    errors: AtomicU64,
}

/// Totals so far, for the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Reserve calls answered.
    pub reserves: u64,
    /// Complete calls answered.
    pub completes: u64,
    /// Reserves allowed.
    pub allowed: u64,
    /// Reserves denied (capacity or a decreasing key).
    pub denied: u64,
    /// Calls that failed or answered an error.
    pub errors: u64,
}

impl Counters {
    fn snapshot(&self, elapsed: Duration) -> Progress {
        Progress {
            elapsed,
            reserves: self.reserves.load(Ordering::Relaxed),
            completes: self.completes.load(Ordering::Relaxed),
            allowed: self.allowed.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>5.1}s] reserves {} ({:.0}/s)  completes {}  allowed {}  denied {}  errors {}",
            self.elapsed.as_secs_f64(),
            self.reserves,
            per_second(self.reserves, self.elapsed),
            self.completes,
            self.allowed,
            self.denied,
            self.errors
        )
    }
}

/// `count / elapsed`, 0 for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Totals at the end.
    pub totals: Progress,
    /// Reserve latencies.
    pub reserve_latency: Histogram,
    /// Complete latencies.
    pub complete_latency: Histogram,
    /// The first error seen, to tell why errors happened.
    pub first_error: Option<String>,
    /// The share of [`LoadConfig::share_of`] admitted per window, when asked.
    pub shares: Option<WindowShares>,
}

impl LoadReport {
    /// Reserve calls per second over the run.
    pub fn reserves_per_second(&self) -> f64 {
        per_second(self.totals.reserves, self.totals.elapsed)
    }

    /// Complete calls per second over the run.
    pub fn completes_per_second(&self) -> f64 {
        per_second(self.totals.completes, self.totals.elapsed)
    }
}

fn latency_line(name: &str, h: &Histogram) -> String {
    let ms = |micros: u64| micros as f64 / 1000.0;
    format!(
        "{name} latency ms: p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  ({} calls)",
        ms(h.percentile_micros(50.0)),
        ms(h.percentile_micros(95.0)),
        ms(h.percentile_micros(99.0)),
        ms(h.max_micros()),
        h.count()
    )
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(f, "duration: {:.2} s", t.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "reserves: {} ({:.1}/s)  allowed {}  denied {}  errors {}",
            t.reserves,
            self.reserves_per_second(),
            t.allowed,
            t.denied,
            t.errors
        )?;
        writeln!(
            f,
            "completes: {} ({:.1}/s)",
            t.completes,
            self.completes_per_second()
        )?;
        writeln!(f, "{}", latency_line("reserve", &self.reserve_latency))?;
        write!(f, "{}", latency_line("complete", &self.complete_latency))?;
        if let Some(error) = &self.first_error {
            write!(f, "\nfirst error: {error}")?;
        }
        if let Some(shares) = &self.shares {
            write!(f, "\n{shares}")?;
        }
        Ok(())
    }
}

/// Shared state of the loops.
struct Shared {
    limiter: Arc<dyn Limiter>,
    targets: Vec<Target>,
    counters: Counters,
    first_error: Mutex<Option<String>>,
    start: Instant,
    deadline: Instant,
    respect_retry_after: bool,
    /// When reserves were allowed (since the start), if a share is measured.
    allowed_at: Option<Mutex<Vec<Duration>>>,
}

impl Shared {
    fn error(&self, message: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(message);
    }
}

/// One loop: reserve, complete if allowed, until the deadline. Returns its latencies.
async fn run_loop(shared: Arc<Shared>, index: usize) -> (Histogram, Histogram) {
    let mut reserve_latency = Histogram::default();
    let mut complete_latency = Histogram::default();
    let mut next = index;
    while Instant::now() < shared.deadline {
        // A limiter that answers without waiting (no-op, in-process) would otherwise never
        // let the other loops and the progress timer run on this thread.
        tokio::task::yield_now().await;
        let target = &shared.targets[next % shared.targets.len()];
        next += 1;
        let lease = LeaseId::new();
        let request = ReserveRequest::new(lease, target.requirements.clone());
        let started = Instant::now();
        let answer = shared.limiter.reserve(request).await;
        reserve_latency.record(started.elapsed());
        shared.counters.reserves.fetch_add(1, Ordering::Relaxed);
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                shared.error(format!("reserve: {e}"));
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        if !answer.allowed {
            match answer.error_code() {
                None if answer.error.is_empty() => {
                    shared.counters.denied.fetch_add(1, Ordering::Relaxed);
                }
                Some(ErrorCode::LimitDecreasing(_)) => {
                    shared.counters.denied.fetch_add(1, Ordering::Relaxed);
                }
                _ => shared.error(format!("reserve answered {:?}", answer.error)),
            }
            if shared.respect_retry_after && answer.retry_after_ms > 0 {
                let until = Instant::now() + Duration::from_millis(answer.retry_after_ms);
                tokio::time::sleep_until(until.min(shared.deadline).into()).await;
            }
            continue;
        }
        shared.counters.allowed.fetch_add(1, Ordering::Relaxed);
        if let Some(allowed_at) = &shared.allowed_at {
            let at = shared.start.elapsed();
            allowed_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(at);
        }
        let complete = CompleteRequest::new(lease, target.actuals.clone());
        let started = Instant::now();
        let answer = shared.limiter.complete(complete).await;
        complete_latency.record(started.elapsed());
        shared.counters.completes.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok(answer) if answer.ok => {}
            Ok(answer) => shared.error(format!("complete answered {:?}", answer.error)),
            Err(e) => shared.error(format!("complete: {e}")),
        }
    }
    (reserve_latency, complete_latency)
}

/// Runs the load test; calls `on_progress` once a second. Must run inside an actix System
/// (the loops are local tasks). Ends at most one limiter call after `config.duration`.
pub async fn run_load(
    limiter: Arc<dyn Limiter>,
    config: &LoadConfig,
    mut on_progress: impl FnMut(&Progress),
) -> LoadReport {
    let duration = config.duration.min(MAX_DURATION);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        limiter,
        targets: config.targets.clone(),
        counters: Counters::default(),
        first_error: Mutex::new(None),
        start,
        deadline: start + duration,
        respect_retry_after: config.respect_retry_after,
        allowed_at: config.share_of.as_ref().map(|_| Mutex::new(Vec::new())),
    });
    let loops: Vec<_> = if shared.targets.is_empty() {
        Vec::new()
    } else {
        (0..config.concurrency.max(1))
            .map(|index| actix_rt::spawn(run_loop(shared.clone(), index)))
            .collect()
    };
    let mut second = 1;
    loop {
        let tick = start + Duration::from_secs(second);
        if tick >= shared.deadline {
            break;
        }
        tokio::time::sleep_until(tick.into()).await;
        on_progress(&shared.counters.snapshot(start.elapsed()));
        second += 1;
    }
    let mut reserve_latency = Histogram::default();
    let mut complete_latency = Histogram::default();
    for finished in join_all(loops).await {
        match finished {
            Ok((reserves, completes)) => {
                reserve_latency.merge(&reserves);
                complete_latency.merge(&completes);
            }
            Err(e) => shared.error(format!("a load loop failed: {e}")),
        }
    }
    let totals = shared.counters.snapshot(start.elapsed());
    let first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let shares = config.share_of.clone().map(|limit| {
        let allowed_at = shared
            .allowed_at
            .as_ref()
            .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default();
        WindowShares::count(limit, &allowed_at, totals.elapsed)
    });
    LoadReport {
        totals,
        reserve_latency,
        complete_latency,
        first_error,
        shares,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::NoopLimiter;

    #[test]
    fn rates_handle_an_empty_interval() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(10, Duration::from_millis(500)), 20.0);
    }

    #[actix_rt::test]
    async fn a_short_run_counts_every_call() {
        tokio::time::timeout(Duration::from_secs(5), async {
            let config = LoadConfig {
                duration: Duration::from_millis(1_100),
                concurrency: 2,
                targets: generated_targets(2),
                respect_retry_after: false,
                share_of: None,
            };
            let mut ticks = 0;
            let report = run_load(Arc::new(NoopLimiter), &config, |_| ticks += 1).await;
            assert_eq!(ticks, 1, "one progress line per full second");
            let t = report.totals;
            assert!(t.reserves > 0);
            assert_eq!(t.reserves, t.allowed);
            assert_eq!(t.completes, t.allowed);
            assert_eq!((t.denied, t.errors), (0, 0));
            assert_eq!(report.reserve_latency.count(), t.reserves);
            assert!(report.to_string().contains("reserves: "));
        })
        .await
        .expect("test exceeded its time bound");
    }
}
