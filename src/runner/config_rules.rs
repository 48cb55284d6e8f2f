//! The validation rules of the Cogni config (SPEC §7), one function per section. Each rule
//! appends an [`Issue`] naming the field, so one pass reports every problem.

use std::collections::HashSet;

use super::config::{Config, Issue, LimiterMode, RateLimiterConfig, QUESTION_EVAL};
use crate::model::DEFAULT_MAX_BATCH_ITEMS;

/// Agent ids unique and non-empty, a supported type, a model and provider, `max_steps` ≥ 1,
/// a sane temperature, and a `default_agent` that exists.
pub fn check_agents(config: &Config, issues: &mut Vec<Issue>) {
    if config.agents.is_empty() {
        issues.push(Issue::new("agents", "must list at least one agent"));
    }
    let mut ids = HashSet::new();
    for (i, agent) in config.agents.iter().enumerate() {
        let field = |name: &str| format!("agents[{i}].{name}");
        if agent.id.trim().is_empty() {
            issues.push(Issue::new(field("id"), "must not be empty"));
        } else if !ids.insert(agent.id.as_str()) {
            issues.push(Issue::new(
                field("id"),
                format!("duplicate agent id {:?}", agent.id),
            ));
        }
        if agent.kind != "builtin" {
            issues.push(Issue::new(
                field("type"),
                format!(
                    "unsupported agent type {:?} (supported: builtin)",
                    agent.kind
                ),
            ));
        }
        if agent.provider.trim().is_empty() {
            issues.push(Issue::new(field("provider"), "must not be empty"));
        }
        if agent.model.trim().is_empty() {
            issues.push(Issue::new(field("model"), "must not be empty"));
        }
        if agent.max_steps < 1 {
            issues.push(Issue::new(field("max_steps"), "must be at least 1 (got 0)"));
        }
        if !agent.temperature.is_finite() || !(0.0..=2.0).contains(&agent.temperature) {
            issues.push(Issue::new(
                field("temperature"),
                format!("must be between 0 and 2 (got {})", agent.temperature),
            ));
        }
        if let Some(url) = &agent.base_url {
            if let Err(bad) = check_http_url(url) {
                issues.push(Issue::new(field("base_url"), bad.to_string()));
            }
        }
    }
    if config.agent(&config.default_agent).is_none() {
        issues.push(Issue::new(
            "default_agent",
            format!("no agent with id {:?}", config.default_agent),
        ));
    }
}

/// Task ids unique and non-empty, a supported type, an existing agent, a questions file,
/// budgets ≥ 1, and `concurrency` ≥ 1 and only on question_eval tasks.
pub fn check_tasks(config: &Config, issues: &mut Vec<Issue>) {
    let mut ids = HashSet::new();
    for (i, task) in config.tasks.iter().enumerate() {
        let field = |name: &str| format!("tasks[{i}].{name}");
        if task.id.trim().is_empty() {
            issues.push(Issue::new(field("id"), "must not be empty"));
        } else if !ids.insert(task.id.as_str()) {
            issues.push(Issue::new(
                field("id"),
                format!("duplicate task id {:?}", task.id),
            ));
        }
        let is_question_eval = task.kind == QUESTION_EVAL;
        if !is_question_eval {
            issues.push(Issue::new(
                field("type"),
                format!(
                    "unsupported task type {:?} (supported: {QUESTION_EVAL})",
                    task.kind
                ),
            ));
        }
        if let Some(agent) = &task.agent {
            if config.agent(agent).is_none() {
                issues.push(Issue::new(
                    field("agent"),
                    format!("no agent with id {agent:?}"),
                ));
            }
        }
        if is_question_eval {
            match &task.questions_file {
                None => issues.push(Issue::new(
                    field("questions_file"),
                    "is required for question_eval tasks",
                )),
                Some(p) if p.as_os_str().is_empty() => {
                    issues.push(Issue::new(field("questions_file"), "must not be empty"))
                }
                Some(_) => {}
            }
        }
        at_least_one(&field("budget.max_tokens"), task.budget.max_tokens, issues);
        at_least_one(
            &field("budget.max_seconds"),
            task.budget.max_seconds,
            issues,
        );
        if let Some(concurrency) = task.concurrency {
            if !is_question_eval {
                issues.push(Issue::new(
                    field("concurrency"),
                    format!(
                        "only allowed on {QUESTION_EVAL} tasks (task {:?} has type {:?})",
                        task.id, task.kind
                    ),
                ));
            } else {
                at_least_one(&field("concurrency"), concurrency, issues);
            }
        }
    }
}

/// Mode-specific requirements and the numeric settings.
pub fn check_rate_limiter(rl: &RateLimiterConfig, issues: &mut Vec<Issue>) {
    match rl.mode {
        LimiterMode::Disabled => {}
        LimiterMode::Remote => match &rl.base_url {
            None => issues.push(Issue::new(
                "rate_limiter.base_url",
                "is required when mode is remote",
            )),
            Some(url) => {
                if let Err(bad) = check_http_url(url) {
                    issues.push(Issue::new("rate_limiter.base_url", bad.to_string()));
                }
            }
        },
        LimiterMode::Embedded => match (&rl.limits_path, &rl.limits) {
            (None, None) => issues.push(Issue::new(
                "rate_limiter.limits_path",
                "embedded mode needs exactly one of limits_path or limits (got neither)",
            )),
            (Some(_), Some(_)) => issues.push(Issue::new(
                "rate_limiter.limits",
                "embedded mode needs exactly one of limits_path or limits (got both)",
            )),
            _ => {}
        },
    }
    if rl.limits.is_some() {
        if let Err(invalid) = rl.inline_states() {
            issues.push(Issue::new("rate_limiter.limits", invalid.to_string()));
        }
    }
    at_least_one("rate_limiter.workers", rl.workers, issues);
    at_least_one(
        "rate_limiter.request_timeout_ms",
        rl.request_timeout_ms,
        issues,
    );
    at_least_one(
        "rate_limiter.max_output_tokens",
        rl.max_output_tokens,
        issues,
    );
    at_least_one(
        "rate_limiter.max_retry_wait_ms",
        rl.max_retry_wait_ms,
        issues,
    );
    at_least_one("rate_limiter.batch.size", rl.batch.size, issues);
    let max_batch_items = DEFAULT_MAX_BATCH_ITEMS as u64;
    if rl.mode == LimiterMode::Remote && rl.batch.size > max_batch_items {
        issues.push(Issue::new(
            "rate_limiter.batch.size",
            format!(
                "must be at most {max_batch_items} in remote mode, ratelimiterd's default \
                 max_batch_items (got {}); a larger batch is refused with 400",
                rl.batch.size
            ),
        ));
    }
    at_least_one("rate_limiter.batch.flush_ms", rl.batch.flush_ms, issues);
}

fn at_least_one(field: &str, value: u64, issues: &mut Vec<Issue>) {
    if value < 1 {
        issues.push(Issue::new(
            field,
            format!("must be at least 1 (got {value})"),
        ));
    }
}

/// Why a URL setting is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadUrl {
    /// Not an absolute URL.
    #[error("{url:?} is not a valid URL ({reason})")]
    Unparsable { url: String, reason: String },
    /// A scheme other than http or https.
    #[error("{url:?} must use http or https (got {scheme})")]
    Scheme { url: String, scheme: String },
}

/// An absolute http(s) URL.
fn check_http_url(url: &str) -> Result<(), BadUrl> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
        Ok(parsed) => Err(BadUrl::Scheme {
            url: url.to_string(),
            scheme: parsed.scheme().to_string(),
        }),
        Err(e) => Err(BadUrl::Unparsable {
            url: url.to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues_for(mode: LimiterMode, size: u64) -> Vec<Issue> {
        let mut rl = RateLimiterConfig {
            mode,
            base_url: Some("http://127.0.0.1:8080".into()),
            ..RateLimiterConfig::default()
        };
        if mode == LimiterMode::Embedded {
            rl.base_url = None;
            rl.limits_path = Some("limits/example.json".into());
        }
        rl.batch.size = size;
        let mut issues = Vec::new();
        check_rate_limiter(&rl, &mut issues);
        issues
    }

    #[test]
    fn remote_batch_size_is_bounded_by_the_server_batch_limit() {
        assert!(issues_for(LimiterMode::Remote, 256).is_empty());
        let issues = issues_for(LimiterMode::Remote, 257);
        assert_eq!(issues.len(), 1, "{issues:?}");
        let text = issues[0].to_string();
        assert!(
            text.starts_with("rate_limiter.batch.size: must be at most 256"),
            "{text}"
        );
        assert!(text.contains("max_batch_items"), "{text}");
        assert!(text.contains("(got 257)"), "{text}");
    }

    #[test]
    fn in_process_batches_have_no_server_bound() {
        assert!(issues_for(LimiterMode::Embedded, 1000).is_empty());
        assert!(issues_for(LimiterMode::Disabled, 1000).is_empty());
    }
}
