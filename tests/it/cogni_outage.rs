//! Cogni while the limiter's backend is down: the limiter answers `backend_error` to every
//! reserve, so a question cannot be admitted; after `rate_limiter.max_retry_wait_ms` it
//! fails with a message saying the limiter was unreachable, and nothing reaches the provider.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::bound::bounded;
use crate::support::cogni::{repo, run_every_task, sim, write};
use actix_web::{web, App, HttpResponse, HttpServer};
use ratelimiter::runner::config::LoadedConfig;
use ratelimiter::runner::eval::TaskStatus;
use ratelimiter::runner::sim::SimLimits;
use serde_json::json;

/// A limiter whose backend is down: every reserve answers `backend_error`.
fn limiter_with_its_backend_down(reserves: Arc<AtomicU64>) -> String {
    let server = HttpServer::new(move || {
        let reserves = reserves.clone();
        App::new().route(
            "/v1/reserve",
            web::post().to(move || {
                reserves.fetch_add(1, Ordering::SeqCst);
                async {
                    HttpResponse::Ok().json(json!({
                        "allowed": false, "retry_after_ms": 0,
                        "reserved_at_unix_ms": 0, "error": "backend_error"
                    }))
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    format!("http://{addr}")
}

#[actix_rt::test]
async fn a_question_that_cannot_be_admitted_says_the_limiter_was_unreachable() {
    bounded(20, async {
        let dir = repo();
        let provider = sim("{}", 0, SimLimits::default());
        let reserves = Arc::new(AtomicU64::new(0));
        let limiter = limiter_with_its_backend_down(reserves.clone());
        write(
            dir.path(),
            "questions.yml",
            "questions:\n  - { id: q0, question: 'Q?', answers: [yes, no], correct_answers: [yes] }\n",
        );
        let config = format!(
            "agents: [ {{ id: default, provider: sim, model: sim-1, base_url: '{}' }} ]\n\
             tasks: [ {{ id: t, questions_file: questions.yml }} ]\n\
             rate_limiter: {{ mode: remote, base_url: '{limiter}', request_timeout_ms: 500, \
             max_retry_wait_ms: 400, batch: {{ size: 1 }} }}\n",
            provider.base_url()
        );
        let path = write(dir.path(), ".cogni/config.yml", &config);
        let loaded = LoadedConfig::load(&path).unwrap();
        let started = Instant::now();
        let report = run_every_task(&loaded).await
        .unwrap();
        let elapsed = started.elapsed();
        let task = &report.tasks[0];
        assert_eq!(task.status, TaskStatus::Error);
        let error = task.questions[0].error.clone().unwrap();
        assert!(
            error.starts_with("rate limiter: limiter unreachable for"),
            "{error}"
        );
        assert!(error.contains("not admitted"), "{error}");
        assert!(error.contains("backend_error"), "{error}");
        assert!(reserves.load(Ordering::SeqCst) >= 2, "retried");
        assert_eq!(provider.stats().requests, 0, "nothing reached the provider");
        // The cap bounds the wait (400 ms of retries, plus start-up and one call).
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    })
    .await;
}
