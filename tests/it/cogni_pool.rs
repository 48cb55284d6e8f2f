//! The per-task worker pool: results in question order whatever the completion order,
//! concurrency as configured, and verbose output from concurrent workers in whole lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::{bounded, within};
use crate::support::cogni::{agent, question, repo, settings, sim};
use ratelimiter::runner::eval::Verdict;
use ratelimiter::runner::output::{Output, SharedBuffer};
use ratelimiter::runner::pool::run_pool;
use ratelimiter::runner::questions::Question;
use ratelimiter::runner::sim::SimLimits;

const REVERSED: &str = r#"
rules:
  - { match: "q0", latency_ms: 400, answer: A }
  - { match: "q1", latency_ms: 300, answer: A }
  - { match: "q2", latency_ms: 200, answer: B }
  - { match: "q3", latency_ms: 100, answer: A }
"#;

fn questions(n: usize) -> Vec<Question> {
    (0..n)
        .map(|i| question(&format!("id{i}"), &format!("question q{i}?"), &["A", "B"]))
        .collect()
}

#[actix_rt::test]
async fn results_follow_question_order_when_completion_order_is_reversed() {
    bounded(10, async {
        let dir = repo();
        let server = sim(REVERSED, 0, SimLimits::default());
        let a = Arc::new(agent(&server, dir.path(), settings(), Output::silent()));
        let mut completion = Vec::new();
        let results = run_pool(a, &questions(4), 4, |r| completion.push(r.index)).await;
        assert_eq!(completion, [3, 2, 1, 0], "completion order is reversed");
        let order: Vec<_> = results.iter().map(|r| (r.index, r.id.as_str())).collect();
        assert_eq!(order, [(0, "id0"), (1, "id1"), (2, "id2"), (3, "id3")]);
        assert_eq!(results[2].verdict, Verdict::Incorrect);
        assert_eq!(server.stats().max_in_flight, 4);
    })
    .await;
}

#[actix_rt::test]
async fn one_worker_runs_questions_one_after_another() {
    bounded(10, async {
        let dir = repo();
        let server = sim("{}", 100, SimLimits::default());
        let a = Arc::new(agent(&server, dir.path(), settings(), Output::silent()));
        let started = Instant::now();
        let mut completion = Vec::new();
        let results = run_pool(a, &questions(3), 1, |r| completion.push(r.index)).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(completion, [0, 1, 2]);
        assert!(results.iter().all(|r| r.verdict == Verdict::Correct));
        assert_eq!(server.stats().max_in_flight, 1);
    })
    .await;
}

#[actix_rt::test]
async fn two_workers_overlap_provider_latency() {
    bounded(10, async {
        let dir = repo();
        let server = sim("{}", 150, SimLimits::default());
        let a = Arc::new(agent(&server, dir.path(), settings(), Output::silent()));
        let started = Instant::now();
        let results = run_pool(a, &questions(2), 2, |_| {}).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(300), "{elapsed:?}");
        assert_eq!(results.len(), 2);
        assert_eq!(server.stats().max_in_flight, 2);
    })
    .await;
}

/// Every verbose line the agent writes, as a predicate on its text after the `[t idN] ` label.
fn well_formed(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("[t id") else {
        return false;
    };
    let Some((number, body)) = rest.split_once("] ") else {
        return false;
    };
    number.parse::<usize>().is_ok()
        && (body.starts_with("step ")
            && (body.contains(" → ") || body.contains(" ← "))
            && !body.contains('[')
            || body.starts_with("correct answer \"A\""))
}

#[actix_rt::test]
async fn verbose_output_from_eight_workers_has_no_broken_lines() {
    bounded(20, async {
        let dir = repo();
        let script = "default:\n  tool_calls: [ {name: list_dir}, {name: read_file, arguments: {path: Cargo.toml}} ]\n  answer: A\n";
        let server = sim(script, 5, SimLimits::default());
        let buffer = SharedBuffer::chunked(3);
        let output = Output::new(Box::new(buffer.clone()), false, true);
        let a = Arc::new(agent(&server, dir.path(), settings(), output));
        let results = run_pool(a, &questions(16), 8, |_| {}).await;
        assert!(results.iter().all(|r| r.verdict == Verdict::Correct));
        assert_eq!(server.stats().max_in_flight, 8);
        let text = buffer.contents();
        let lines: Vec<&str> = text.lines().collect();
        // Per question: 3 steps × (request + response) + 2 tool lines + 1 verdict line.
        assert_eq!(lines.len(), 16 * 9, "{text}");
        let broken: Vec<_> = lines.iter().filter(|l| !well_formed(l)).collect();
        assert!(broken.is_empty(), "broken lines: {broken:#?}");
    })
    .await;
}

#[test]
fn concurrent_threads_write_whole_lines() {
    within(20, || {
        let buffer = SharedBuffer::chunked(2);
        let output = Output::new(Box::new(buffer.clone()), false, true);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let output = output.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        output.detail(&format!("worker {t} line {i} {}", "x".repeat(40)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = buffer.contents();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 5, "broken line {line:?}");
            assert_eq!(
                (parts[0], parts[2], parts[4]),
                ("worker", "line", "x".repeat(40).as_str()),
                "broken line {line:?}"
            );
            assert!(seen.insert((parts[1].to_string(), parts[3].to_string())));
        }
        assert_eq!(seen.len(), 8 * 200);
    });
}
