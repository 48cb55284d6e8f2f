//! Cogni: the repository question evaluator that runs its LLM calls through the limiter.
//!
//! # Embedding Cogni
//!
//! The public modules form Cogni's embeddable API: the pieces a program (the `cogni` and
//! `llm-sim` binaries, the `cogni_bench` example, the tests) assembles into a run of its own:
//! load a [`config`] and [`questions`], set up the limiter ([`limiter_setup`], [`gate`]),
//! talk to a [`provider`] through the [`pipeline`] and the [`agent`]'s tool loop over the
//! repository [`tools`], judge answers with [`eval`], run tasks on the [`pool`] or a whole
//! [`run`], write [`results`] and [`output`], drive it all from the [`cli`], and simulate a
//! provider with [`sim`]. Everything else is internal (`pub(crate)`).
//!
//! - [`config`] / `config_defaults` / `config_rules`: `.cogni/config.yml` and its validation.
//! - [`questions`]: question files.
//! - [`tools`]: read-only repository tools confined to the repo root.
//! - [`provider`] / `chat`: the OpenAI-compatible chat-completions client and wire types.
//! - [`gate`] / [`limiter_setup`]: where each provider request is reserved and completed.
//! - [`pipeline`]: `run_call` with hooks and retries; [`agent`]: the tool loop and budgets.
//! - `prompt`, [`eval`]: prompts, answer parsing, verdicts and task status.
//! - [`pool`]: per-task worker actors; [`run`]: orchestration of a run.
//! - [`results`], [`output`]: `results.json`, the summary, line-locked console/log output.
//! - [`cli`]: the `cogni` commands (exit codes) behind the thin binary.
//! - `validate`: `cogni validate` over the config and the files it names.
//! - [`sim`]: `llm-sim`, an OpenAI-compatible provider simulator for tests and demos.

pub mod agent;
pub(crate) mod chat;
pub mod cli;
pub mod config;
pub(crate) mod config_defaults;
pub(crate) mod config_rules;
pub mod eval;
pub mod gate;
pub mod limiter_setup;
pub mod output;
pub mod pipeline;
pub mod pool;
pub(crate) mod prompt;
pub mod provider;
pub mod questions;
pub mod results;
pub mod run;
pub mod sim;
pub mod tools;
pub(crate) mod validate;
