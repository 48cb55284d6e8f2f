//! Step definitions of `spec/features/cogni.feature`.

use std::time::{Duration, Instant};

use cucumber::{given, then, when};
use ratelimiter::runner::config::LoadedConfig;
use ratelimiter::runner::eval::Verdict;
use ratelimiter::runner::run::{run_tasks, select_tasks, RunOptions};
use ratelimiter::runner::sim::{Script, SimConfig, SimServer};

use super::world::{limit_states, CogniWorld, RunningLimiter, MODEL, PROVIDER};

/// Upper bound of one evaluation in a scenario.
const RUN_BOUND: Duration = Duration::from_secs(10);

#[given(expr = "a provider that takes {int} ms per call")]
fn provider(world: &mut CogniWorld, latency_ms: u64) {
    let server = SimServer::start(SimConfig {
        latency: Duration::from_millis(latency_ms),
        script: Script::default(),
        ..SimConfig::default()
    })
    .expect("llm-sim starts");
    world.sim = Some(server);
}

#[given(expr = "a repository with {int} questions")]
fn repository(world: &mut CogniWorld, count: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("README.md"), "# demo\n").expect("write README");
    let mut text = String::from("version: 1\nquestions:\n");
    for i in 0..count {
        // The simulator's default agent answers the first choice, which is the correct one.
        text.push_str(&format!(
            "  - {{ id: q{i}, question: 'Question {i}?', answers: [right, wrong], correct_answers: [right] }}\n"
        ));
    }
    std::fs::write(dir.path().join("questions.yml"), text).expect("write questions");
    world.dir = Some(dir);
    world.questions = count;
}

#[given(expr = "a limits file with a concurrency cap of {int}")]
fn limits_file(world: &mut CogniWorld, cap: u64) {
    let json = serde_json::to_string_pretty(&limit_states(cap)).expect("limits JSON");
    std::fs::create_dir_all(world.root().join("limits")).expect("limits dir");
    std::fs::write(world.root().join("limits/cogni.json"), json).expect("write limits file");
}

#[given(expr = "limiter mode \"disabled\" with {int} workers")]
fn disabled(world: &mut CogniWorld, workers: usize) {
    world.rate_limiter = "{ mode: disabled }".into();
    world.workers = workers;
}

#[given(expr = "limiter mode \"embedded\" reading the limits file with {int} workers")]
fn embedded_file(world: &mut CogniWorld, workers: usize) {
    world.rate_limiter = "{ mode: embedded, limits_path: limits/cogni.json }".into();
    world.workers = workers;
}

#[given(
    expr = "limiter mode \"embedded\" with inline limits of concurrency cap {int} and {int} workers"
)]
fn embedded_inline(world: &mut CogniWorld, cap: u64, workers: usize) {
    let inline = serde_json::to_string(&limit_states(cap)).expect("limits JSON");
    world.rate_limiter = format!("{{ mode: embedded, limits: {inline} }}");
    world.workers = workers;
}

#[given(expr = "a running ratelimiterd with a concurrency cap of {int}")]
async fn running_limiter(world: &mut CogniWorld, cap: u64) {
    world.limiterd = Some(RunningLimiter::start(limit_states(cap)).await);
}

#[given(expr = "limiter mode \"remote\" pointing at the running ratelimiterd with {int} workers")]
fn remote(world: &mut CogniWorld, workers: usize) {
    let url = &world
        .limiterd
        .as_ref()
        .expect("a ratelimiterd step ran first")
        .base_url;
    world.rate_limiter = format!("{{ mode: remote, base_url: '{url}' }}");
    world.workers = workers;
}

#[when("cogni evaluates the questions")]
async fn evaluate(world: &mut CogniWorld) {
    let config = format!(
        "agents:\n  - {{ id: default, provider: {PROVIDER}, model: {MODEL}, base_url: '{}' }}\n\
         tasks:\n  - {{ id: bdd, questions_file: questions.yml, concurrency: {} }}\n\
         rate_limiter: {}\n",
        world.sim().base_url(),
        world.workers,
        world.rate_limiter
    );
    let path = world.root().join(".cogni/config.yml");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("config dir");
    std::fs::write(&path, config).expect("write config");
    let started = Instant::now();
    let loaded = LoadedConfig::load(&path).expect("config is valid");
    let tasks = select_tasks(&loaded, &[]).expect("task selected");
    let options = RunOptions {
        print_summary: false,
        ..RunOptions::default()
    };
    let report = tokio::time::timeout(RUN_BOUND, run_tasks(&loaded, tasks, &options))
        .await
        .expect("the run finished within its bound")
        .expect("the run completed");
    world.elapsed = started.elapsed();
    world.report = Some(report);
}

#[then("every question is answered correctly")]
fn all_correct(world: &mut CogniWorld) {
    let task = &world.report().tasks[0];
    assert_eq!(task.questions.len(), world.questions);
    for q in &task.questions {
        assert_eq!(q.verdict, Verdict::Correct, "{q:?}");
    }
}

#[then(expr = "the run took less than {int} ms")]
fn took_less_than(world: &mut CogniWorld, ms: u64) {
    println!(
        "    run took {} ms (bound {ms} ms)",
        world.elapsed.as_millis()
    );
    assert!(
        world.elapsed < Duration::from_millis(ms),
        "run took {:?}",
        world.elapsed
    );
}

#[then(expr = "the provider saw {int} calls in flight at once")]
fn saw_in_flight(world: &mut CogniWorld, n: u64) {
    assert_eq!(
        world.sim().stats().max_in_flight,
        n,
        "{:?}",
        world.sim().stats()
    );
}

#[then(expr = "the provider never saw more than {int} call in flight")]
fn at_most_in_flight(world: &mut CogniWorld, n: u64) {
    let stats = world.sim().stats();
    assert!(stats.max_in_flight <= n, "{stats:?}");
    assert_eq!(stats.status_429, 0, "{stats:?}");
}

#[then(expr = "ratelimiterd saw at least {int} reserve and {int} complete")]
async fn limiter_saw(world: &mut CogniWorld, reserves: u64, completes: u64) {
    let limiter = world
        .limiterd
        .as_ref()
        .expect("a ratelimiterd step ran first");
    let key = |suffix: &str| format!("global:llm:{PROVIDER}:{MODEL}:{suffix}");
    let report_tokens: u64 = world.report().tasks.iter().map(|t| t.tokens.total()).sum();
    // Each allowed reserve takes 1 of rpm for the whole window.
    let rpm = limiter.usage(&key("rpm")).await;
    assert!(
        rpm["in_use"].as_u64().unwrap_or(0) >= reserves,
        "rpm usage {rpm}"
    );
    // Each complete released its concurrency hold (the timeout is 60 s, far away) and shrank
    // its tpm reservation to the tokens the provider reported.
    let concurrency = limiter.usage(&key("concurrency")).await;
    assert_eq!(
        concurrency["in_use"].as_u64(),
        Some(0),
        "concurrency usage {concurrency}"
    );
    let tpm = limiter.usage(&key("tpm")).await;
    assert_eq!(
        tpm["in_use"].as_u64(),
        Some(report_tokens),
        "tpm usage {tpm}"
    );
    assert!(completes >= 1 && report_tokens > 0);
}
