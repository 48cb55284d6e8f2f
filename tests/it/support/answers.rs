//! Callers that keep reserving on several instances until told to stop, and the log of every
//! answer they saw with its latency, for tests that time answers through a fault.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cluster::{Instances, Reserved};
use super::http::lease;

/// One answer a caller saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When the request was sent.
    pub started: Instant,
    /// How long the answer took.
    pub latency: Duration,
    /// The instance asked.
    pub instance: usize,
    /// What it answered.
    pub answer: Reserved,
}

impl Seen {
    /// `backend_error`: the outcome is unknown.
    pub fn is_backend_error(&self) -> bool {
        self.answer == Reserved::Error("backend_error".into())
    }
}

/// Every answer seen so far, shared by callers.
#[derive(Debug, Clone, Default)]
pub struct Answers(Arc<Mutex<Vec<Seen>>>);

impl Answers {
    /// Reserves on `instance` for `lease_id` and logs the answer with its latency.
    pub async fn reserve(
        &self,
        instances: &Instances,
        instance: usize,
        lease_id: &str,
        requirements: &[(&str, u64)],
    ) -> Reserved {
        let started = Instant::now();
        let answer = instances.reserve(instance, lease_id, requirements).await;
        self.0.lock().unwrap().push(Seen {
            started,
            latency: started.elapsed(),
            instance,
            answer: answer.clone(),
        });
        answer
    }

    /// Reserves with a new lease id until the answer is known: `backend_error` leaves the
    /// outcome open, so the same lease id is retried (the ledger answers it the way it first
    /// decided). Every attempt is logged.
    pub async fn reserve_until_known(
        &self,
        instances: &Instances,
        instance: usize,
        requirements: &[(&str, u64)],
    ) -> (String, Reserved) {
        let lease_id = lease();
        loop {
            let answer = self
                .reserve(instances, instance, &lease_id, requirements)
                .await;
            if answer != Reserved::Error("backend_error".into()) {
                return (lease_id, answer);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every answer so far.
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// How many answers `which` picks.
    pub fn count(&self, which: impl Fn(&Seen) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|s| which(s)).count()
    }

    /// The answers to requests sent at `from` or later and answered by `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<Seen> {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|s| s.started >= from && s.started + s.latency <= to)
            .cloned()
            .collect()
    }
}

/// The slowest of `seen` (zero for none).
pub fn slowest(seen: &[Seen]) -> Duration {
    seen.iter().map(|s| s.latency).max().unwrap_or_default()
}

/// Callers running until [`Callers::stop`].
pub struct Callers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Callers {
    /// Starts `count` callers; caller `n` runs `round(n)` again and again until stopped.
    pub fn spawn<F, Fut>(count: usize, round: F) -> Callers
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let round = Arc::new(round);
        let tasks = (0..count)
            .map(|caller| {
                let (stop, round) = (Arc::clone(&stop), Arc::clone(&round));
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        round(caller).await;
                    }
                })
            })
            .collect();
        Callers { stop, tasks }
    }

    /// Stops every caller after its current round; fails if one takes longer than `bound`
    /// or panicked.
    pub async fn stop(self, bound: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            tokio::time::timeout(bound, task)
                .await
                .expect("a caller stopped in time")
                .expect("a caller did not panic");
        }
    }
}
