//! What one LLM call needs from the limiter (SPEC §6): the key conventions of SPEC §1, the
//! byte-based token upper bound, and the requirements/actuals builders the scheduler uses.
//!
//! The upper bound is deliberately crude: a token is never shorter than one byte of prompt,
//! so `prompt bytes + max output tokens` can only over-estimate. Over-estimating is safe: the
//! slack is given back by `complete`, which reports the real token count.

use crate::model::{Actual, LimitDefinition, LimitState, Requirement};

/// One LLM call as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobSpec {
    /// Provider name as it appears in limit keys, e.g. `openai`.
    pub provider: String,
    /// Model name as it appears in limit keys, e.g. `gpt-4o`.
    pub model: String,
    /// Tenant whose daily token budget the call draws on, if any.
    pub tenant: Option<String>,
    /// Size of the prompt in bytes (everything sent to the model).
    pub prompt_bytes: u64,
    /// The `max_tokens` the call asks the model for.
    pub max_output_tokens: u64,
}

impl JobSpec {
    /// A call to `provider`/`model` without a tenant.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        prompt_bytes: u64,
        max_output_tokens: u64,
    ) -> Self {
        JobSpec {
            provider: provider.into(),
            model: model.into(),
            tenant: None,
            prompt_bytes,
            max_output_tokens,
        }
    }

    /// The same call charged to `tenant`'s daily token budget.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The safe token estimate reserved before the call.
    pub fn token_upper_bound(&self) -> u64 {
        token_upper_bound(self.prompt_bytes, self.max_output_tokens)
    }
}

/// `prompt_bytes + max_output_tokens`, saturating: never fewer tokens than the call can use.
pub fn token_upper_bound(prompt_bytes: u64, max_output_tokens: u64) -> u64 {
    prompt_bytes.saturating_add(max_output_tokens)
}

/// `global:llm:<provider>:<model>:rpm` — requests per minute.
pub fn rpm_key(provider: &str, model: &str) -> String {
    format!("global:llm:{provider}:{model}:rpm")
}

/// `global:llm:<provider>:<model>:tpm` — tokens per minute.
pub fn tpm_key(provider: &str, model: &str) -> String {
    format!("global:llm:{provider}:{model}:tpm")
}

/// `global:llm:<provider>:<model>:concurrency` — calls in flight.
pub fn concurrency_key(provider: &str, model: &str) -> String {
    format!("global:llm:{provider}:{model}:concurrency")
}

/// `tenant:<tenant>:llm:daily_tokens` — a tenant's daily token budget.
pub fn tenant_daily_tokens_key(tenant: &str) -> String {
    format!("tenant:{tenant}:llm:daily_tokens")
}

/// The limits of one `(provider, model)` under the keys the requirements use: `rpm`
/// requests and `tpm` tokens per 60 s window, and `concurrency` calls in flight, each held
/// at most `timeout_seconds` unless completed. Units are `requests` and `tokens`.
pub fn model_limits(
    provider: &str,
    model: &str,
    rpm: u64,
    tpm: u64,
    concurrency: u64,
    timeout_seconds: u64,
) -> Vec<LimitState> {
    let with_unit = |definition: LimitDefinition, unit: &str| {
        LimitState::active(LimitDefinition {
            unit: unit.to_string(),
            ..definition
        })
    };
    vec![
        with_unit(
            LimitDefinition::rolling(rpm_key(provider, model), rpm, 60),
            "requests",
        ),
        with_unit(
            LimitDefinition::rolling(tpm_key(provider, model), tpm, 60),
            "tokens",
        ),
        with_unit(
            LimitDefinition::concurrency(
                concurrency_key(provider, model),
                concurrency,
                timeout_seconds,
            ),
            "requests",
        ),
    ]
}

/// What to reserve before the call: rpm 1, tpm upper, concurrency 1, and the tenant's daily
/// tokens upper when a tenant is set. Amounts are at least 1 (the API rejects 0).
pub fn requirements_for(spec: &JobSpec) -> Vec<Requirement> {
    let upper = spec.token_upper_bound().max(1);
    let mut requirements = vec![
        Requirement::new(rpm_key(&spec.provider, &spec.model), 1),
        Requirement::new(tpm_key(&spec.provider, &spec.model), upper),
        Requirement::new(concurrency_key(&spec.provider, &spec.model), 1),
    ];
    if let Some(tenant) = &spec.tenant {
        requirements.push(Requirement::new(tenant_daily_tokens_key(tenant), upper));
    }
    requirements
}

/// What to report after the call: the request itself (rpm 1, concurrency 1) and the tokens
/// really used on tpm and on the tenant's budget. Keys match [`requirements_for`] one to one.
pub fn actuals_for(spec: &JobSpec, actual_tokens: u64) -> Vec<Actual> {
    let mut actuals = vec![
        Actual::new(rpm_key(&spec.provider, &spec.model), 1),
        Actual::new(tpm_key(&spec.provider, &spec.model), actual_tokens),
        Actual::new(concurrency_key(&spec.provider, &spec.model), 1),
    ];
    if let Some(tenant) = &spec.tenant {
        actuals.push(Actual::new(tenant_daily_tokens_key(tenant), actual_tokens));
    }
    actuals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LimitKind;
    use rstest::rstest;

    #[test]
    fn model_limits_use_the_requirement_keys() {
        let limits = model_limits("openai", "gpt-4o", 500, 30_000, 50, 120);
        let summary: Vec<_> = limits
            .iter()
            .map(|s| {
                let d = &s.definition;
                (
                    d.key.as_str(),
                    d.kind,
                    d.capacity,
                    d.window_seconds,
                    d.timeout_seconds,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "global:llm:openai:gpt-4o:rpm",
                    LimitKind::Rolling,
                    500,
                    60,
                    0
                ),
                (
                    "global:llm:openai:gpt-4o:tpm",
                    LimitKind::Rolling,
                    30_000,
                    60,
                    0
                ),
                (
                    "global:llm:openai:gpt-4o:concurrency",
                    LimitKind::Concurrency,
                    50,
                    0,
                    120
                ),
            ]
        );
        for state in &limits {
            state.validate().unwrap();
        }
    }

    #[rstest]
    #[case::small(10, 20, 30)]
    #[case::zero(0, 0, 0)]
    #[case::saturates(u64::MAX, 5, u64::MAX)]
    fn upper_bound_is_bytes_plus_max_output(
        #[case] bytes: u64,
        #[case] max: u64,
        #[case] upper: u64,
    ) {
        assert_eq!(token_upper_bound(bytes, max), upper);
    }

    #[rstest]
    #[case::rpm(rpm_key("openai", "gpt-4o"), "global:llm:openai:gpt-4o:rpm")]
    #[case::tpm(tpm_key("openai", "gpt-4o"), "global:llm:openai:gpt-4o:tpm")]
    #[case::concurrency(
        concurrency_key("anthropic", "claude"),
        "global:llm:anthropic:claude:concurrency"
    )]
    #[case::tenant(tenant_daily_tokens_key("acme"), "tenant:acme:llm:daily_tokens")]
    fn keys_follow_the_conventions(#[case] key: String, #[case] expected: &str) {
        assert_eq!(key, expected);
    }

    #[rstest]
    #[case::no_tenant(
        JobSpec::new("openai", "gpt-4o", 1000, 256),
        vec![
            Requirement::new("global:llm:openai:gpt-4o:rpm", 1),
            Requirement::new("global:llm:openai:gpt-4o:tpm", 1256),
            Requirement::new("global:llm:openai:gpt-4o:concurrency", 1),
        ]
    )]
    #[case::tenant(
        JobSpec::new("anthropic", "claude", 7, 3).with_tenant("acme"),
        vec![
            Requirement::new("global:llm:anthropic:claude:rpm", 1),
            Requirement::new("global:llm:anthropic:claude:tpm", 10),
            Requirement::new("global:llm:anthropic:claude:concurrency", 1),
            Requirement::new("tenant:acme:llm:daily_tokens", 10),
        ]
    )]
    #[case::empty_prompt_still_reserves_one_token(
        JobSpec::new("p", "m", 0, 0),
        vec![
            Requirement::new("global:llm:p:m:rpm", 1),
            Requirement::new("global:llm:p:m:tpm", 1),
            Requirement::new("global:llm:p:m:concurrency", 1),
        ]
    )]
    fn requirements_match_the_spec(#[case] spec: JobSpec, #[case] expected: Vec<Requirement>) {
        assert_eq!(requirements_for(&spec), expected);
    }

    #[rstest]
    #[case::no_tenant(
        JobSpec::new("openai", "gpt-4o", 1000, 256),
        42,
        vec![
            Actual::new("global:llm:openai:gpt-4o:rpm", 1),
            Actual::new("global:llm:openai:gpt-4o:tpm", 42),
            Actual::new("global:llm:openai:gpt-4o:concurrency", 1),
        ]
    )]
    #[case::tenant_gets_actual_tokens(
        JobSpec::new("openai", "gpt-4o", 1000, 256).with_tenant("t1"),
        2000,
        vec![
            Actual::new("global:llm:openai:gpt-4o:rpm", 1),
            Actual::new("global:llm:openai:gpt-4o:tpm", 2000),
            Actual::new("global:llm:openai:gpt-4o:concurrency", 1),
            Actual::new("tenant:t1:llm:daily_tokens", 2000),
        ]
    )]
    fn actuals_match_the_spec(
        #[case] spec: JobSpec,
        #[case] tokens: u64,
        #[case] expected: Vec<Actual>,
    ) {
        assert_eq!(actuals_for(&spec, tokens), expected);
    }

    #[test]
    fn actual_keys_match_requirement_keys() {
        let spec = JobSpec::new("a", "b", 1, 1).with_tenant("t");
        let reserved: Vec<String> = requirements_for(&spec)
            .into_iter()
            .map(|r| r.key.into_owned())
            .collect();
        let reported: Vec<String> = actuals_for(&spec, 5)
            .into_iter()
            .map(|a| a.key.into_owned())
            .collect();
        assert_eq!(reserved, reported);
    }
}
