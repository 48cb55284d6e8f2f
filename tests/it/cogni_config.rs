//! Cogni config and questions files: defaults, and every validation rule of SPEC §7 with the
//! message that names the file and the field.

use std::path::{Path, PathBuf};

use crate::support::bound::within;
use crate::support::cogni::write;
use ratelimiter::runner::config::{ConfigError, LimiterMode, LoadedConfig};
use ratelimiter::runner::questions::QuestionsFile;
use rstest::rstest;

fn load(yaml: &str) -> Result<LoadedConfig, ConfigError> {
    LoadedConfig::from_text(yaml, Path::new("/repo/.cogni/config.yml"))
}

fn error_of(yaml: &str) -> String {
    match load(yaml) {
        Ok(_) => panic!("config should be rejected:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_config_has_every_default() {
    within(5, || {
        let loaded = load("").unwrap();
        let c = &loaded.config;
        assert_eq!(c.version, 1);
        assert_eq!(c.repo.output_dir, PathBuf::from("./cogni-results"));
        assert_eq!(c.default_agent, "default");
        let agent = c.agent("default").unwrap();
        assert_eq!(
            (
                agent.kind.as_str(),
                agent.provider.as_str(),
                agent.model.as_str()
            ),
            ("builtin", "openrouter", "gpt-4.1-mini")
        );
        assert_eq!((agent.max_steps, agent.temperature), (25, 0.0));
        let rl = &c.rate_limiter;
        assert_eq!(rl.mode, LimiterMode::Disabled);
        assert_eq!(
            (rl.workers, rl.request_timeout_ms, rl.max_output_tokens),
            (1, 2000, 2048)
        );
        assert_eq!((rl.batch.size, rl.batch.flush_ms), (128, 2));
        assert_eq!(loaded.root, PathBuf::from("/repo"));
        assert_eq!(loaded.output_dir(), PathBuf::from("/repo/cogni-results"));
    });
}

#[test]
fn task_defaults_and_concurrency_fallback() {
    within(5, || {
        let loaded = load(
            "rate_limiter: { workers: 3 }\ntasks:\n  - { id: a, questions_file: q.yml }\n  - { id: b, questions_file: sub/q.yml, concurrency: 8 }\n",
        )
        .unwrap();
        let c = &loaded.config;
        let (a, b) = (&c.tasks[0], &c.tasks[1]);
        assert_eq!(a.kind, "question_eval");
        assert_eq!((a.budget.max_tokens, a.budget.max_seconds), (12_000, 120));
        assert_eq!(
            c.task_concurrency(a),
            3,
            "unset concurrency falls back to rate_limiter.workers"
        );
        assert_eq!(c.task_concurrency(b), 8);
        assert_eq!(c.task_agent(a).unwrap().id, "default");
        assert_eq!(
            loaded.resolve(b.questions_file.as_ref().unwrap()),
            PathBuf::from("/repo/sub/q.yml")
        );
    });
}

#[test]
fn spec_outside_a_cogni_directory_roots_at_its_own_directory() {
    within(5, || {
        let loaded = LoadedConfig::from_text("", Path::new("/srv/project/cogni.yml")).unwrap();
        assert_eq!(loaded.root, PathBuf::from("/srv/project"));
    });
}

#[rstest]
#[case::unknown_mode(
    "rate_limiter: { mode: fast }",
    "rate_limiter.mode: unknown variant `fast`"
)]
#[case::remote_without_base_url(
    "rate_limiter: { mode: remote }",
    "rate_limiter.base_url: is required when mode is remote"
)]
#[case::remote_bad_url(
    "rate_limiter: { mode: remote, base_url: 'ftp://x' }",
    "rate_limiter.base_url: \"ftp://x\" must use http or https"
)]
#[case::embedded_without_limits("rate_limiter: { mode: embedded }", "rate_limiter.limits_path: embedded mode needs exactly one of limits_path or limits (got neither)")]
#[case::embedded_with_both(
    "rate_limiter: { mode: embedded, limits_path: l.json, limits: [] }",
    "rate_limiter.limits: embedded mode needs exactly one of limits_path or limits (got both)"
)]
#[case::invalid_inline_limits(
    "rate_limiter: { mode: embedded, limits: [ { key: k, kind: rolling, capacity: 0, window_seconds: 60 } ] }",
    "rate_limiter.limits: entry 0: capacity: must be greater than 0"
)]
#[case::workers_zero(
    "rate_limiter: { workers: 0 }",
    "rate_limiter.workers: must be at least 1 (got 0)"
)]
#[case::batch_size_zero(
    "rate_limiter: { batch: { size: 0 } }",
    "rate_limiter.batch.size: must be at least 1 (got 0)"
)]
#[case::flush_zero(
    "rate_limiter: { batch: { flush_ms: 0 } }",
    "rate_limiter.batch.flush_ms: must be at least 1 (got 0)"
)]
#[case::timeout_zero(
    "rate_limiter: { request_timeout_ms: 0 }",
    "rate_limiter.request_timeout_ms: must be at least 1 (got 0)"
)]
#[case::max_output_zero(
    "rate_limiter: { max_output_tokens: 0 }",
    "rate_limiter.max_output_tokens: must be at least 1 (got 0)"
)]
#[case::negative_workers(
    "rate_limiter: { workers: -1 }",
    "rate_limiter.workers: invalid type: integer `-1`, expected u64"
)]
#[case::concurrency_zero(
    "tasks: [ { id: a, questions_file: q.yml, concurrency: 0 } ]",
    "tasks[0].concurrency: must be at least 1 (got 0)"
)]
#[case::concurrency_on_other_type(
    "tasks: [ { id: a, type: qa, concurrency: 2 } ]",
    "tasks[0].concurrency: only allowed on question_eval tasks (task \"a\" has type \"qa\")"
)]
#[case::unsupported_task_type(
    "tasks: [ { id: a, type: qa } ]",
    "tasks[0].type: unsupported task type \"qa\" (supported: question_eval)"
)]
#[case::missing_questions_file(
    "tasks: [ { id: a } ]",
    "tasks[0].questions_file: is required for question_eval tasks"
)]
#[case::duplicate_task(
    "tasks: [ { id: a, questions_file: q.yml }, { id: a, questions_file: q.yml } ]",
    "tasks[1].id: duplicate task id \"a\""
)]
#[case::unknown_task_agent(
    "tasks: [ { id: a, questions_file: q.yml, agent: ghost } ]",
    "tasks[0].agent: no agent with id \"ghost\""
)]
#[case::budget_zero(
    "tasks: [ { id: a, questions_file: q.yml, budget: { max_seconds: 0 } } ]",
    "tasks[0].budget.max_seconds: must be at least 1 (got 0)"
)]
#[case::unknown_default_agent("default_agent: ghost", "default_agent: no agent with id \"ghost\"")]
#[case::duplicate_agent(
    "agents: [ { id: a }, { id: a } ]\ndefault_agent: a",
    "agents[1].id: duplicate agent id \"a\""
)]
#[case::agent_type(
    "agents: [ { id: default, type: remote } ]",
    "agents[0].type: unsupported agent type \"remote\" (supported: builtin)"
)]
#[case::max_steps_zero(
    "agents: [ { id: default, max_steps: 0 } ]",
    "agents[0].max_steps: must be at least 1 (got 0)"
)]
#[case::version("version: 2", "version: must be 1 (got 2)")]
#[case::unknown_field(
    "rate_limiter: { wrokers: 2 }",
    "rate_limiter: unknown field `wrokers`"
)]
fn invalid_configs_name_the_file_and_field(
    #[case] yaml: &'static str,
    #[case] expected: &'static str,
) {
    within(5, move || {
        let message = error_of(yaml);
        assert!(
            message.contains(expected),
            "expected {expected:?} in:\n{message}"
        );
        assert!(
            message.starts_with("/repo/.cogni/config.yml: "),
            "message names the file:\n{message}"
        );
    });
}

#[test]
fn every_problem_is_reported_at_once() {
    within(5, || {
        let message = error_of("rate_limiter: { mode: remote, workers: 0, batch: { size: 0 } }");
        assert_eq!(message.lines().count(), 3, "{message}");
        for field in [
            "rate_limiter.base_url",
            "rate_limiter.workers",
            "rate_limiter.batch.size",
        ] {
            assert!(message.contains(field), "{field} missing in {message}");
        }
        assert!(message
            .lines()
            .all(|l| l.starts_with("/repo/.cogni/config.yml: ")));
    });
}

#[test]
fn valid_embedded_and_remote_configs_load() {
    within(5, || {
        let inline = load(
            "rate_limiter:\n  mode: embedded\n  limits:\n    - { key: 'global:llm:sim:m:concurrency', kind: concurrency, capacity: 1, timeout_seconds: 30 }\n",
        )
        .unwrap();
        let states = inline.config.rate_limiter.inline_states().unwrap().unwrap();
        assert_eq!(states[0].definition.capacity, 1);
        load("rate_limiter: { mode: embedded, limits_path: limits/x.json }").unwrap();
        load("rate_limiter: { mode: remote, base_url: 'http://127.0.0.1:8080' }").unwrap();
    });
}

fn questions_error(name: &str, text: &str) -> String {
    match QuestionsFile::from_text(text, Path::new(name)) {
        Ok(_) => panic!("questions should be rejected:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[rstest]
#[case::no_questions("version: 1\nquestions: []", "q.yml: questions: must not be empty")]
#[case::empty_question(
    "questions: [ { question: ' ', answers: [a], correct_answers: [a] } ]",
    "q.yml: questions[0].question: must not be empty"
)]
#[case::no_answers(
    "questions: [ { question: x, answers: [], correct_answers: [a] } ]",
    "q.yml: questions[0].answers: must not be empty"
)]
#[case::empty_answer(
    "questions: [ { question: x, answers: [a, ''], correct_answers: [a] } ]",
    "q.yml: questions[0].answers[1]: must not be empty"
)]
#[case::no_correct(
    "questions: [ { question: x, answers: [a], correct_answers: [] } ]",
    "q.yml: questions[0].correct_answers: must not be empty"
)]
#[case::not_subset(
    "questions: [ { question: x, answers: [a, b], correct_answers: [c] } ]",
    "q.yml: questions[0].correct_answers[0]: \"c\" is not one of the answers"
)]
#[case::duplicate_ids(
    "questions: [ { id: k, question: x, answers: [a], correct_answers: [a] }, { id: k, question: y, answers: [a], correct_answers: [a] } ]",
    "q.yml: questions[1].id: duplicate question id \"k\""
)]
#[case::empty_id(
    "questions: [ { id: '', question: x, answers: [a], correct_answers: [a] } ]",
    "q.yml: questions[0].id: must not be empty when present"
)]
#[case::missing_field(
    "questions: [ { question: x, answers: [a] } ]",
    "q.yml: questions[0]: missing field `correct_answers`"
)]
#[case::version(
    "version: 3\nquestions: [ { question: x, answers: [a], correct_answers: [a] } ]",
    "q.yml: version: must be 1 (got 3)"
)]
fn invalid_questions_name_the_file_and_field(
    #[case] text: &'static str,
    #[case] expected: &'static str,
) {
    within(5, move || {
        let message = questions_error("q.yml", text);
        assert!(
            message.contains(expected),
            "expected {expected:?} in:\n{message}"
        );
    });
}

#[test]
fn correct_answers_match_case_insensitively_and_trimmed() {
    within(5, || {
        let file = QuestionsFile::from_text(
            "questions: [ { question: x, answers: ['Tokio ', async-std], correct_answers: [' tokio'] } ]",
            Path::new("q.yml"),
        )
        .unwrap();
        let q = &file.questions[0];
        assert!(q.is_correct("TOKIO"));
        assert!(!q.is_correct("async-std"));
        assert_eq!(q.display_id(0), "q1");
    });
}

#[test]
fn json_questions_files_are_read_as_json() {
    within(5, || {
        let dir = tempfile::tempdir().unwrap();
        let good = write(
            dir.path(),
            "q.json",
            r#"{"version":1,"questions":[{"id":"a","question":"x?","answers":["y","z"],"correct_answers":["y"]}]}"#,
        );
        assert_eq!(
            QuestionsFile::load(&good).unwrap().questions[0]
                .id
                .as_deref(),
            Some("a")
        );
        let bad = write(
            dir.path(),
            "bad.json",
            r#"{"questions":[{"question":"x?","answers":["y"],"correct_answers":["n"]}]}"#,
        );
        let message = QuestionsFile::load(&bad).unwrap_err().to_string();
        assert!(
            message.contains("bad.json: questions[0].correct_answers[0]"),
            "{message}"
        );
        let missing = QuestionsFile::load(&dir.path().join("nope.yml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.yml: cannot read"), "{missing}");
    });
}
