//! The Cogni configuration file (`.cogni/config.yml` or `--spec PATH`, SPEC §7): its shape,
//! its defaults, and validation that names the file and the field of every problem.
//!
//! Loading is two steps: serde reads the YAML (type errors already carry the field path),
//! then [`Config::validate`] checks every rule and reports *all* problems at once so that
//! `cogni validate` shows a complete list.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits_file::{parse_limit_states, InvalidLimits};
use crate::model::LimitState;

use super::config_defaults as defaults;

/// Where `cogni` looks for its configuration when `--spec` is not given.
pub const DEFAULT_CONFIG_PATH: &str = ".cogni/config.yml";

/// The only task type Cogni runs.
pub const QUESTION_EVAL: &str = "question_eval";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; must be 1.
    #[serde(default = "defaults::version")]
    pub version: u32,
    /// Repository-level settings.
    #[serde(default)]
    pub repo: RepoConfig,
    /// The agents tasks can use.
    #[serde(default = "defaults::agents")]
    pub agents: Vec<AgentConfig>,
    /// The agent used by tasks (and `cogni eval`) that do not name one.
    #[serde(default = "defaults::agent_id")]
    pub default_agent: String,
    /// The tasks `cogni run` executes.
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
    /// How LLM calls are rate limited.
    #[serde(default)]
    pub rate_limiter: RateLimiterConfig,
}

/// Repository-level settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Where `results.json` is written; relative paths resolve against the repo root.
    #[serde(default = "defaults::output_dir")]
    pub output_dir: PathBuf,
}

/// One LLM agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Unique id tasks refer to.
    pub id: String,
    /// Agent implementation; only `builtin` exists.
    #[serde(rename = "type", default = "defaults::agent_type")]
    pub kind: String,
    /// Provider name, used in limit keys (`global:llm:<provider>:<model>:...`) and to pick a
    /// default base URL.
    #[serde(default = "defaults::provider")]
    pub provider: String,
    /// Model name sent to the provider.
    #[serde(default = "defaults::model")]
    pub model: String,
    /// Most provider requests one question may make.
    #[serde(default = "defaults::max_steps")]
    pub max_steps: u32,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: f64,
    /// OpenAI-compatible endpoint; overrides `LLM_BASE_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Unique id, used by `cogni run TASK_ID`.
    pub id: String,
    /// Task type; only `question_eval` runs.
    #[serde(rename = "type", default = "defaults::task_type")]
    pub kind: String,
    /// Agent id; unset → `default_agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The questions file; relative paths resolve against the repo root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions_file: Option<PathBuf>,
    /// Per-question budgets.
    #[serde(default)]
    pub budget: BudgetConfig,
    /// Questions evaluated at once (question_eval only); unset → `rate_limiter.workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

/// Per-question budgets; exceeding one ends the question with `budget_exceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Most tokens (prompt + completion, as the provider reports them) per question.
    #[serde(default = "defaults::budget_tokens")]
    pub max_tokens: u64,
    /// Most wall-clock seconds per question.
    #[serde(default = "defaults::budget_seconds")]
    pub max_seconds: u64,
}

/// How the limiter is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimiterMode {
    /// No rate limiting.
    #[default]
    Disabled,
    /// `ratelimiterd` over HTTP at `base_url`.
    Remote,
    /// The in-process memory backend, seeded from `limits_path` or inline `limits`.
    Embedded,
}

impl fmt::Display for LimiterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimiterMode::Disabled => "disabled",
            LimiterMode::Remote => "remote",
            LimiterMode::Embedded => "embedded",
        })
    }
}

/// The `rate_limiter` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiterConfig {
    /// disabled | remote | embedded.
    #[serde(default)]
    pub mode: LimiterMode,
    /// `ratelimiterd` URL (remote only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Limits file (embedded; exclusive with `limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_path: Option<PathBuf>,
    /// Inline limit states or definitions (embedded; exclusive with `limits_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<serde_json::Value>,
    /// Default task concurrency and scheduler worker count.
    #[serde(default = "defaults::one")]
    pub workers: u64,
    /// Per-request timeout of the HTTP limiter client.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `max_tokens` of every provider request, and so the output part of each reservation.
    #[serde(default = "defaults::max_output_tokens")]
    pub max_output_tokens: u64,
    /// Longest time one reservation is retried while the limiter is unreachable (or answers
    /// `backend_error`) before the question fails as not admitted.
    #[serde(default = "defaults::max_retry_wait_ms")]
    pub max_retry_wait_ms: u64,
    /// Batching of limiter calls.
    #[serde(default)]
    pub batch: BatchSettings,
}

/// The `rate_limiter.batch` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Most calls per batch; 1 disables batching.
    #[serde(default = "defaults::batch_size")]
    pub size: u64,
    /// Longest wait for a batch to fill.
    #[serde(default = "defaults::flush_ms")]
    pub flush_ms: u64,
}

/// One validation problem: the dotted field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted path of the field, e.g. `tasks[0].concurrency`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Issue {
    /// The issue of a file whose `version` is not the one format version (1), if any.
    pub fn unsupported_version(version: u32) -> Option<Issue> {
        (version != 1).then(|| Issue::new("version", format!("must be 1 (got {version})")))
    }

    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a configuration could not be used; every variant names the file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the file: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message (it names the field).
        message: String,
    },
    /// The file parsed but breaks rules.
    #[error("{}", format_issues(path, issues))]
    Invalid {
        /// The file the issues belong to.
        path: PathBuf,
        /// Every problem found.
        issues: Vec<Issue>,
    },
}

/// Renders issues one per line, each prefixed with the file.
pub fn format_issues(path: &Path, issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|issue| format!("{}: {issue}", path.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A configuration with the place it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed, validated configuration.
    pub config: Config,
    /// The file it was read from.
    pub path: PathBuf,
    /// The repository root every relative path resolves against: the parent of a `.cogni`
    /// directory holding the file, otherwise the file's own directory.
    pub root: PathBuf,
}

/// Reads a config or questions file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl LoadedConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = read_text(path)?;
        Self::from_text(&text, path)
    }

    /// Parses and validates config text that came from `path`.
    pub fn from_text(text: &str, path: &Path) -> Result<LoadedConfig, ConfigError> {
        let config = Config::parse(text, path)?;
        let issues = config.validate();
        if !issues.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                issues,
            });
        }
        Ok(LoadedConfig {
            config,
            path: path.to_path_buf(),
            root: absolute(&repo_root_for(path)),
        })
    }

    /// The built-in defaults for a repository at `root` (for `cogni eval` without a config
    /// file); `path` then reads `(built-in defaults)`.
    pub fn defaults(root: &Path) -> LoadedConfig {
        LoadedConfig {
            config: Config::default(),
            path: PathBuf::from("(built-in defaults)"),
            root: absolute(root),
        }
    }

    /// Resolves a path from the config against the repo root (`.` and `..` folded lexically).
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        if relative.is_absolute() {
            normalize(relative)
        } else {
            normalize(&self.root.join(relative))
        }
    }

    /// The results directory.
    pub fn output_dir(&self) -> PathBuf {
        self.resolve(&self.config.repo.output_dir)
    }
}

/// `path` made absolute against the current directory (unchanged if that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path)
        .map(|p| normalize(&p))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Folds `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The repo root for a config file: the parent of its `.cogni` directory, else its directory.
pub fn repo_root_for(config_path: &Path) -> PathBuf {
    let dir = match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dir.file_name().is_some_and(|name| name == ".cogni") {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    } else {
        dir
    }
}

impl Config {
    /// Parses YAML (JSON is valid YAML) without checking rules; an empty file is all defaults.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Every rule of SPEC §7; an empty list means the config is valid.
    pub fn validate(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        issues.extend(Issue::unsupported_version(self.version));
        super::config_rules::check_agents(self, &mut issues);
        super::config_rules::check_tasks(self, &mut issues);
        super::config_rules::check_rate_limiter(&self.rate_limiter, &mut issues);
        issues
    }

    /// The agent with `id`.
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The agent a task uses.
    pub fn task_agent(&self, task: &TaskConfig) -> Option<&AgentConfig> {
        self.agent(task.agent.as_deref().unwrap_or(&self.default_agent))
    }

    /// How many questions of `task` run at once.
    pub fn task_concurrency(&self, task: &TaskConfig) -> usize {
        let n = task.concurrency.unwrap_or(self.rate_limiter.workers).max(1);
        usize::try_from(n).unwrap_or(usize::MAX)
    }
}

impl RateLimiterConfig {
    /// The inline limits as validated states (the rules of a limits file).
    pub fn inline_states(&self) -> Result<Option<Vec<LimitState>>, InvalidLimits> {
        self.limits
            .as_ref()
            .map(|value| parse_limit_states(&value.to_string()))
            .transpose()
    }
}
