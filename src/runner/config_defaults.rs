//! The defaults of the Cogni config (SPEC §7, "defaults as shown"), as serde default
//! functions and `Default` implementations.

use std::path::PathBuf;

use super::config::{
    AgentConfig, BatchSettings, BudgetConfig, Config, LimiterMode, RateLimiterConfig, RepoConfig,
    QUESTION_EVAL,
};

/// Default of `version`: 1.
pub fn version() -> u32 {
    1
}

/// Default of `repo.output_dir`: `./cogni-results`.
pub fn output_dir() -> PathBuf {
    PathBuf::from("./cogni-results")
}

/// Default of `default_agent` (and the default agent's id): `default`.
pub fn agent_id() -> String {
    "default".into()
}

/// Default of `agents[].type`: `builtin`.
pub fn agent_type() -> String {
    "builtin".into()
}

/// Default of `agents[].provider`: `openrouter`.
pub fn provider() -> String {
    "openrouter".into()
}

/// Default of `agents[].model`: `gpt-4.1-mini`.
pub fn model() -> String {
    "gpt-4.1-mini".into()
}

/// Default of `agents[].max_steps`: 25.
pub fn max_steps() -> u32 {
    25
}

/// Default of `agents`: one builtin agent `default`.
pub fn agents() -> Vec<AgentConfig> {
    vec![AgentConfig {
        id: agent_id(),
        kind: agent_type(),
        provider: provider(),
        model: model(),
        max_steps: max_steps(),
        temperature: 0.0,
        base_url: None,
    }]
}

/// Default of `tasks[].type`: `question_eval`.
pub fn task_type() -> String {
    QUESTION_EVAL.into()
}

/// Default of `tasks[].budget.max_tokens`: 12000.
pub fn budget_tokens() -> u64 {
    12_000
}

/// Default of `tasks[].budget.max_seconds`: 120.
pub fn budget_seconds() -> u64 {
    120
}

/// Default of `rate_limiter.workers`: 1.
pub fn one() -> u64 {
    1
}

/// Default of `rate_limiter.request_timeout_ms`: 2000.
pub fn request_timeout_ms() -> u64 {
    2_000
}

/// Default of `rate_limiter.max_output_tokens`: 2048.
pub fn max_output_tokens() -> u64 {
    2_048
}

/// Default of `rate_limiter.max_retry_wait_ms`: 30000.
pub fn max_retry_wait_ms() -> u64 {
    crate::client::DEFAULT_MAX_RETRY_WAIT_MS
}

/// Default of `rate_limiter.batch.size`: 128.
pub fn batch_size() -> u64 {
    128
}

/// Default of `rate_limiter.batch.flush_ms`: 2.
pub fn flush_ms() -> u64 {
    2
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            output_dir: output_dir(),
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            max_tokens: budget_tokens(),
            max_seconds: budget_seconds(),
        }
    }
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            size: batch_size(),
            flush_ms: flush_ms(),
        }
    }
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig {
            mode: LimiterMode::Disabled,
            base_url: None,
            limits_path: None,
            limits: None,
            workers: one(),
            request_timeout_ms: request_timeout_ms(),
            max_output_tokens: max_output_tokens(),
            max_retry_wait_ms: max_retry_wait_ms(),
            batch: BatchSettings::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: version(),
            repo: RepoConfig::default(),
            agents: agents(),
            default_agent: agent_id(),
            tasks: Vec::new(),
            rate_limiter: RateLimiterConfig::default(),
        }
    }
}
