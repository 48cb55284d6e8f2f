//! Runs the Cogni scenarios of `spec/features/cogni.feature` with the `cucumber` BDD
//! runner: cogni in-process against the llm-sim simulator, in disabled, embedded (limits
//! file and inline limits) and remote (a real in-process `ratelimiterd`) modes. Scenarios
//! run one at a time because they measure wall time. Exits non-zero if any step fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "bdd_cogni/steps.rs"]
mod steps;
#[path = "bdd_cogni/world.rs"]
mod world;

use std::time::Duration;

use cucumber::World as _;

/// Upper bound of the whole run.
const RUN_BOUND: Duration = Duration::from_secs(120);

fn main() {
    let feature = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/features/cogni.feature");
    actix_rt::System::new().block_on(async move {
        let run = world::CogniWorld::cucumber()
            .max_concurrent_scenarios(1)
            .fail_on_skipped()
            // Ignore the test harness's arguments (e.g. `cargo test -- --nocapture`).
            .with_cli(cucumber::cli::Opts::<_, _, _, cucumber::cli::Empty>::default())
            .run_and_exit(feature);
        if tokio::time::timeout(RUN_BOUND, run).await.is_err() {
            eprintln!("bdd_cogni: the scenarios did not finish within {RUN_BOUND:?}");
            std::process::exit(1);
        }
    });
}
