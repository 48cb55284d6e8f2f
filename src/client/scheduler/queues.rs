//! The scheduler's queues: one FIFO per `(provider, model)`, each possibly waiting until an
//! instant (a retry-after or a backoff), taken round-robin among the ready ones.
//!
//! Pure data with time passed in, so fairness and waiting are tested without timers.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Identifies a queue: `(provider, model)`.
pub(crate) type QueueKey = (String, String);

/// An item that knows its submission order.
pub(crate) trait Sequenced {
    /// Smaller means submitted earlier.
    fn seq(&self) -> u64;
}

struct Queue<J> {
    jobs: VecDeque<J>,
    /// The queue takes no job before this instant.
    ready_at: Option<Instant>,
    /// How many times the queue was woken by a completion.
    completions: u64,
}

/// Every queue, in creation order, with the round-robin cursor.
pub(crate) struct Queues<J> {
    queues: Vec<Queue<J>>,
    index: HashMap<QueueKey, usize>,
    /// The queue to look at first on the next take.
    cursor: usize,
    len: usize,
}

impl<J: Sequenced> Queues<J> {
    /// No queues.
    pub(crate) fn new() -> Self {
        Queues {
            queues: Vec::new(),
            index: HashMap::new(),
            cursor: 0,
            len: 0,
        }
    }

    fn queue(&mut self, key: &QueueKey) -> &mut Queue<J> {
        let position = match self.index.get(key) {
            Some(&position) => position,
            None => {
                self.queues.push(Queue {
                    jobs: VecDeque::new(),
                    ready_at: None,
                    completions: 0,
                });
                self.index.insert(key.clone(), self.queues.len() - 1);
                self.queues.len() - 1
            }
        };
        &mut self.queues[position]
    }

    /// Adds a new job at the back of its queue.
    pub(crate) fn push_back(&mut self, key: &QueueKey, job: J) {
        self.queue(key).jobs.push_back(job);
        self.len += 1;
    }

    /// Puts a job back in its queue in submission order (ahead of jobs submitted after it).
    pub(crate) fn requeue(&mut self, key: &QueueKey, job: J) {
        let queue = self.queue(key);
        let position = queue.jobs.partition_point(|j| j.seq() < job.seq());
        queue.jobs.insert(position, job);
        self.len += 1;
    }

    /// Makes a queue wait until `until`: the latest answer wins, since it was computed
    /// from the freshest state (an earlier, longer wait is not kept, so waits never grow on
    /// their own).
    pub(crate) fn delay(&mut self, key: &QueueKey, until: Instant) {
        self.queue(key).ready_at = Some(until);
    }

    /// Makes a waiting queue ready at once: capacity on its keys has just been freed (one of
    /// its calls completed), so its head should not sleep out a retry-after hint that was
    /// computed before the release.
    pub(crate) fn wake(&mut self, key: &QueueKey) {
        if let Some(&position) = self.index.get(key) {
            let queue = &mut self.queues[position];
            queue.ready_at = None;
            queue.completions += 1;
        }
    }

    /// How many completions have woken the queue so far (0 for a queue not seen yet).
    pub(crate) fn completions(&self, key: &QueueKey) -> u64 {
        self.index
            .get(key)
            .map_or(0, |&position| self.queues[position].completions)
    }

    /// Takes the head of the next ready queue after the last one served, or `None` if no
    /// queue with jobs is ready at `now`.
    pub(crate) fn pop_ready(&mut self, now: Instant) -> Option<J> {
        let count = self.queues.len();
        for step in 0..count {
            let position = (self.cursor + step) % count;
            let queue = &mut self.queues[position];
            if queue.ready_at.is_some_and(|t| t > now) {
                continue;
            }
            queue.ready_at = None;
            if let Some(job) = queue.jobs.pop_front() {
                // Not reduced modulo the count: a queue created later comes next.
                self.cursor = position + 1;
                self.len -= 1;
                return Some(job);
            }
        }
        None
    }

    /// The earliest instant a waiting queue with jobs becomes ready.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter(|q| !q.jobs.is_empty())
            .filter_map(|q| q.ready_at)
            .min()
    }

    /// Removes and returns every queued job.
    pub(crate) fn drain(&mut self) -> Vec<J> {
        self.len = 0;
        self.queues
            .iter_mut()
            .flat_map(|q| q.jobs.drain(..))
            .collect()
    }

    /// Whether no job is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, PartialEq, Eq)]
    struct J(u64, &'static str);

    impl Sequenced for J {
        fn seq(&self) -> u64 {
            self.0
        }
    }

    fn key(name: &str) -> QueueKey {
        (name.to_string(), "m".to_string())
    }

    #[test]
    fn takes_round_robin_across_queues() {
        let mut queues = Queues::new();
        for (seq, name) in [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c")] {
            queues.push_back(&key(name), J(seq, name));
        }
        let now = Instant::now();
        let order: Vec<&str> = std::iter::from_fn(|| queues.pop_ready(now).map(|j| j.1)).collect();
        assert_eq!(order, ["a", "b", "c", "a", "b", "a"]);
        assert!(queues.is_empty());
    }

    #[test]
    fn a_queue_created_after_a_take_is_served_next() {
        let mut queues = Queues::new();
        let now = Instant::now();
        queues.push_back(&key("a"), J(1, "a"));
        queues.push_back(&key("a"), J(2, "a"));
        assert_eq!(queues.pop_ready(now), Some(J(1, "a")));
        queues.push_back(&key("b"), J(3, "b"));
        assert_eq!(queues.pop_ready(now), Some(J(3, "b")));
        assert_eq!(queues.pop_ready(now), Some(J(2, "a")));
    }

    #[test]
    fn a_waiting_queue_does_not_block_others() {
        let mut queues = Queues::new();
        queues.push_back(&key("a"), J(1, "a"));
        queues.push_back(&key("b"), J(2, "b"));
        queues.push_back(&key("b"), J(3, "b"));
        let now = Instant::now();
        queues.delay(&key("a"), now + Duration::from_millis(100));
        assert_eq!(queues.pop_ready(now), Some(J(2, "b")));
        assert_eq!(queues.pop_ready(now), Some(J(3, "b")));
        assert_eq!(queues.pop_ready(now), None);
        assert_eq!(queues.next_wake(), Some(now + Duration::from_millis(100)));
        assert_eq!(
            queues.pop_ready(now + Duration::from_millis(100)),
            Some(J(1, "a"))
        );
        assert_eq!(queues.next_wake(), None);
    }

    #[test]
    fn wake_makes_a_waiting_queue_ready_at_once() {
        let mut queues = Queues::new();
        let now = Instant::now();
        queues.push_back(&key("a"), J(1, "a"));
        queues.delay(&key("a"), now + Duration::from_secs(5));
        assert_eq!(queues.pop_ready(now), None);
        queues.wake(&key("missing"));
        assert_eq!(queues.pop_ready(now), None);
        assert_eq!(queues.completions(&key("a")), 0);
        queues.wake(&key("a"));
        assert_eq!(queues.completions(&key("a")), 1);
        assert_eq!(queues.completions(&key("missing")), 0);
        assert_eq!(queues.pop_ready(now), Some(J(1, "a")));
    }

    #[test]
    fn the_latest_delay_wins_and_requeue_keeps_submission_order() {
        let mut queues = Queues::new();
        let now = Instant::now();
        queues.push_back(&key("a"), J(3, "a"));
        queues.requeue(&key("a"), J(1, "a"));
        queues.requeue(&key("a"), J(2, "a"));
        queues.delay(&key("a"), now + Duration::from_millis(10));
        queues.delay(&key("a"), now + Duration::from_millis(50));
        assert_eq!(queues.pop_ready(now + Duration::from_millis(20)), None);
        queues.delay(&key("a"), now + Duration::from_millis(40));
        assert_eq!(queues.next_wake(), Some(now + Duration::from_millis(40)));
        assert_eq!(queues.pop_ready(now + Duration::from_millis(30)), None);
        let later = now + Duration::from_millis(40);
        let order: Vec<u64> = std::iter::from_fn(|| queues.pop_ready(later).map(|j| j.0)).collect();
        assert_eq!(order, [1, 2, 3]);
    }

    #[test]
    fn drain_empties_every_queue() {
        let mut queues = Queues::new();
        queues.push_back(&key("a"), J(1, "a"));
        queues.push_back(&key("b"), J(2, "b"));
        assert!(!queues.is_empty());
        assert_eq!(queues.drain().len(), 2);
        assert!(queues.is_empty());
        assert_eq!(queues.pop_ready(Instant::now()), None);
    }
}
