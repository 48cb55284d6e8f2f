//! Runs the rate-limiter scenarios of `spec/features/rate_limiter.feature` with the
//! `cucumber` BDD runner against a real `ratelimiterd` HTTP server per scenario, once per
//! backend: the memory backend always, and TigerBeetle (a server started by this run) when
//! the `tigerbeetle` feature is built in. `BDD_BACKEND=memory|tigerbeetle` runs only one.
//! The run exits non-zero if any step fails on any backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "bdd/steps.rs"]
mod steps;
/// The throwaway TigerBeetle server (this runner uses the shared one only).
#[cfg(feature = "tigerbeetle")]
use ratelimiter::tigerbeetle::testing as tigerbeetle;
#[path = "bdd/world.rs"]
mod world;

use std::time::Duration;

use cucumber::writer::Stats as _;
use cucumber::World as _;

/// Upper bound of one backend's run.
const RUN_BOUND: Duration = Duration::from_secs(120);

fn main() {
    let backends = match world::BackendChoice::selected() {
        Ok(choices) => choices,
        Err(message) => {
            eprintln!("bdd: {message}");
            std::process::exit(2);
        }
    };
    let feature = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/spec/features/rate_limiter.feature"
    );
    let mut failed = Vec::new();
    for backend in backends {
        println!(
            "bdd: rate-limiter scenarios on the {} backend",
            backend.name()
        );
        world::select(backend);
        let passed = actix_rt::System::new().block_on(async move {
            let run = world::LimiterWorld::cucumber()
                // Ignore the test harness's arguments (e.g. `cargo test -- --nocapture`).
                .with_cli(cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::default())
                .run(feature);
            match tokio::time::timeout(RUN_BOUND, run).await {
                Ok(writer) => !writer.execution_has_failed(),
                Err(_) => {
                    eprintln!("bdd: the scenarios did not finish within {RUN_BOUND:?}");
                    false
                }
            }
        });
        if !passed {
            failed.push(backend.name());
        }
    }
    if !failed.is_empty() {
        eprintln!("bdd: scenarios failed on: {}", failed.join(", "));
        std::process::exit(1);
    }
}
