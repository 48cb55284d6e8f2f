//! Runs the rate-limiter scenarios of `spec/features/rate_limiter.feature` with the
//! `cucumber` BDD runner against a real `ratelimiterd` HTTP server per scenario.
//!
//! The backend is chosen by `BDD_BACKEND=memory|tigerbeetle` (default `memory`) in one
//! factory, [`world::make_backend`]. The run exits non-zero if any step fails.

#[path = "bdd/steps.rs"]
mod steps;
#[path = "bdd/world.rs"]
mod world;

use std::time::Duration;

use cucumber::World as _;

/// Upper bound of the whole run.
const RUN_BOUND: Duration = Duration::from_secs(120);

fn main() {
    let backend = match world::BackendChoice::from_env() {
        Ok(choice) => choice,
        Err(message) => {
            eprintln!("bdd: {message}");
            std::process::exit(2);
        }
    };
    println!(
        "bdd: rate-limiter scenarios on the {} backend",
        backend.name()
    );
    let feature = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/spec/features/rate_limiter.feature"
    );
    actix_rt::System::new().block_on(async move {
        let run = world::LimiterWorld::cucumber()
            // Ignore the test harness's arguments (e.g. `cargo test -- --nocapture`).
            .with_cli(cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::default())
            .run_and_exit(feature);
        if tokio::time::timeout(RUN_BOUND, run).await.is_err() {
            eprintln!("bdd: the scenarios did not finish within {RUN_BOUND:?}");
            std::process::exit(1);
        }
    });
}
