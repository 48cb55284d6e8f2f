//! The `cogni` binary end to end: `validate`, `eval` and `run` against the provider
//! simulator, results.json, the summary, `--log`, `--no-color`, and exit codes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::bound::within;
use crate::support::cogni::{repo, sim, write};
use ratelimiter::runner::results::RunReport;
use ratelimiter::runner::sim::SimLimits;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cogni` in `dir` with `LLM_BASE_URL`, killing it after `secs`.
fn cogni(dir: &Path, base_url: &str, args: &[&str], secs: u64) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cogni"))
        .args(args)
        .current_dir(dir)
        .env("LLM_BASE_URL", base_url)
        .env_remove("LLM_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("cogni {args:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const CONFIG: &str = "agents:\n  - { id: default, provider: sim, model: sim-1 }\ntasks:\n  - { id: core, questions_file: questions.yml, concurrency: 2 }\n  - { id: broken, questions_file: broken.yml }\n";
const QUESTIONS: &str = "version: 1\nquestions:\n  - { id: lang, question: 'Which language?', answers: [Rust, Go], correct_answers: [Rust] }\n  - { id: entry, question: 'Which entry point?', answers: [main.go, src/main.rs], correct_answers: [src/main.rs] }\n  - { id: wrong, question: 'Which runtime?', answers: [tokio, async-std], correct_answers: [async-std] }\n";
const BROKEN: &str = "questions:\n  - { question: 'Does the provider fail?', answers: [yes], correct_answers: [yes] }\n";
const SCRIPT: &str = "rules:\n  - match: entry point\n    tool_calls: [ { name: read_file, arguments: { path: src/main.rs } } ]\n    answer: src/main.rs\n  - { match: provider fail, fail_first: [500, 500, 500, 500], retry_after_ms: 5 }\n";

fn project() -> tempfile::TempDir {
    let dir = repo();
    write(dir.path(), ".cogni/config.yml", CONFIG);
    write(dir.path(), "questions.yml", QUESTIONS);
    write(dir.path(), "broken.yml", BROKEN);
    dir
}

#[test]
fn validate_accepts_a_good_project() {
    within(30, || {
        let dir = project();
        let run = cogni(dir.path(), "http://127.0.0.1:9/v1", &["validate"], 20);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            run.stdout.trim(),
            ".cogni/config.yml: ok (2 task(s), 4 question(s), limiter disabled)"
        );
    });
}

#[test]
fn validate_reports_config_questions_and_limits_problems() {
    within(30, || {
        let dir = project();
        write(
            dir.path(),
            ".cogni/config.yml",
            "rate_limiter: { mode: remote, workers: 0 }\n",
        );
        let run = cogni(dir.path(), "", &["validate"], 20);
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains(
                ".cogni/config.yml: rate_limiter.base_url: is required when mode is remote"
            ),
            "{}",
            run.stderr
        );
        assert!(run
            .stderr
            .contains(".cogni/config.yml: rate_limiter.workers: must be at least 1 (got 0)"));

        write(
            dir.path(),
            ".cogni/config.yml",
            &format!(
                "{CONFIG}rate_limiter: {{ mode: embedded, limits_path: limits/missing.json }}\n"
            ),
        );
        write(
            dir.path(),
            "broken.yml",
            "questions: [ { question: x, answers: [a], correct_answers: [b] } ]\n",
        );
        let run = cogni(dir.path(), "", &["validate"], 20);
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains("broken.yml: questions[0].correct_answers[0]: \"b\" is not one of the answers (tasks[1].questions_file"), "{}", run.stderr);
        assert!(
            run.stderr.contains("rate_limiter.limits_path: cannot read"),
            "{}",
            run.stderr
        );
    });
}

#[test]
fn missing_config_is_an_error_with_a_hint() {
    within(30, || {
        let dir = tempfile::tempdir().unwrap();
        let run = cogni(dir.path(), "", &["run"], 20);
        assert_eq!(run.code, 2);
        assert!(
            run.stderr
                .contains(".cogni/config.yml: cannot read the file"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("--spec PATH"));
        let run = cogni(dir.path(), "", &["validate", "--spec", "elsewhere.yml"], 20);
        assert_eq!(run.code, 2);
        assert!(run.stderr.contains("elsewhere.yml: cannot read the file"));
    });
}

#[test]
fn eval_writes_results_and_exits_zero_even_with_wrong_answers() {
    within(60, || {
        let dir = project();
        let server = sim(SCRIPT, 20, SimLimits::default());
        let run = cogni(
            dir.path(),
            &server.base_url(),
            &["eval", "questions.yml", "--output-dir", "out", "--no-color"],
            40,
        );
        assert_eq!(
            run.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        assert!(!run.stdout.contains('\x1b'), "--no-color");
        assert!(
            run.stdout
                .contains("[questions] 3 questions, 1 worker(s), sim/sim-1, limiter disabled"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("[questions] 3/3 "),
            "progress lines:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("task             status accuracy"),
            "summary table:\n{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains("questions        fail      66.7%     2/3"),
            "{}",
            run.stdout
        );
        let report: RunReport = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("out/results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report.run_id.len(), 26);
        assert_eq!(report.limiter_mode, "disabled");
        assert!(report.config_path.ends_with(".cogni/config.yml"));
        assert!(report.started_at.ends_with('Z') && report.finished_at >= report.started_at);
        let task = &report.tasks[0];
        let ids: Vec<_> = task.questions.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["lang", "entry", "wrong"]);
        let verdicts: Vec<_> = task.questions.iter().map(|q| q.verdict.as_str()).collect();
        assert_eq!(verdicts, ["correct", "correct", "incorrect"]);
        assert_eq!(
            (task.questions[1].steps, task.questions[1].tool_calls.len()),
            (2, 1)
        );
        assert_eq!(task.status.as_str(), "fail");
        assert_eq!(server.stats().requests, 4);
    });
}

#[test]
fn run_exits_non_zero_when_a_task_errors_and_logs_every_step() {
    within(60, || {
        let dir = project();
        let server = sim(SCRIPT, 0, SimLimits::default());
        let run = cogni(
            dir.path(),
            &server.base_url(),
            &["run", "core", "broken", "--log", "run.log"],
            40,
        );
        assert_eq!(
            run.code, 1,
            "stdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        assert!(
            !run.stdout.contains("step 1 attempt 1 →"),
            "no per-step lines without --verbose"
        );
        let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
        assert!(log.contains("[broken q1] step 1 attempt 4 ←"), "{log}");
        assert!(log.contains("[core entry] step 1 tool read_file"), "{log}");
        let report: RunReport = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("cogni-results/results.json")).unwrap(),
        )
        .unwrap();
        let statuses: Vec<_> = report
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.status.as_str()))
            .collect();
        assert_eq!(statuses, [("core", "fail"), ("broken", "error")]);
        assert_eq!(
            report.tasks[1].questions[0].verdict.as_str(),
            "runtime_error"
        );

        let verbose = cogni(
            dir.path(),
            &server.base_url(),
            &["run", "core", "--verbose"],
            40,
        );
        assert_eq!(verbose.code, 0);
        assert!(
            verbose.stdout.contains("[core lang] step 1 attempt 1 →"),
            "{}",
            verbose.stdout
        );
    });
}

#[test]
fn eval_without_a_config_file_uses_the_defaults() {
    within(60, || {
        let dir = repo();
        write(
            dir.path(),
            "q.json",
            r#"{"questions":[{"question":"Which language?","answers":["Rust","Go"],"correct_answers":["Rust"]}]}"#,
        );
        let server = sim("{}", 0, SimLimits::default());
        let run = cogni(dir.path(), &server.base_url(), &["eval", "q.json"], 40);
        assert_eq!(
            run.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        assert!(
            run.stdout.contains(
                "[q] 1 questions, 1 worker(s), openrouter/gpt-4.1-mini, limiter disabled"
            ),
            "{}",
            run.stdout
        );
        let report: RunReport = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("cogni-results/results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report.config_path, "(built-in defaults)");
        assert_eq!(report.tasks[0].status.as_str(), "pass");
    });
}

#[test]
fn unknown_task_or_agent_is_a_usage_error() {
    within(30, || {
        let dir = project();
        let run = cogni(dir.path(), "", &["run", "nope"], 20);
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains("unknown task \"nope\""),
            "{}",
            run.stderr
        );
        let run = cogni(
            dir.path(),
            "",
            &["eval", "questions.yml", "--agent", "ghost"],
            20,
        );
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains("--agent: no agent with id \"ghost\""),
            "{}",
            run.stderr
        );
    });
}
