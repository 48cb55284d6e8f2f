//! The LLM provider: OpenAI-compatible chat completions (OpenAI, OpenRouter, vLLM, Ollama,
//! the `llm-sim` simulator). One [`ChatProvider::send`] is one HTTP request; retrying 429 and
//! 5xx answers is the call pipeline's job ([`super::agent`]), so that every retry is a new,
//! separately rate-limited request.

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use super::chat::{
    ChatMessage, ChatRequest, ChatResponse, Choice, FunctionCall, TokenUsage, ToolCall,
};
use super::config::AgentConfig;

/// Why a provider request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProviderError {
    /// HTTP 429: the provider's own limits were exceeded.
    #[error("provider rate limited the request (HTTP 429): {body}")]
    RateLimited {
        /// The provider's Retry-After, if it sent one.
        retry_after: Option<Duration>,
        /// Start of the response body.
        body: String,
    },
    /// HTTP 5xx.
    #[error("provider server error (HTTP {status}): {body}")]
    Server {
        /// The status code.
        status: u16,
        /// The provider's Retry-After, if it sent one.
        retry_after: Option<Duration>,
        /// Start of the response body.
        body: String,
    },
    /// Any other non-success status (bad request, auth, unknown model, ...).
    #[error("provider rejected the request (HTTP {status}): {body}")]
    Status {
        /// The status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The request did not complete (connection refused, reset, timeout).
    #[error("provider unreachable: {0}")]
    Transport(String),
    /// The answer was not a chat-completions response.
    #[error("unreadable provider response: {0}")]
    Decode(String),
}

impl ProviderError {
    /// 429 and 5xx are worth retrying; everything else ends the question.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. } | ProviderError::Server { .. }
        )
    }

    /// The wait the provider asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Something that answers chat-completions requests.
#[async_trait]
pub trait ChatProvider: Send + Sync + 'static {
    /// Sends one request (no retries).
    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError>;
}

/// Why no provider client could be set up for an agent.
#[derive(Debug, Error)]
pub enum ProviderSetupError {
    /// Neither the agent, `LLM_BASE_URL` nor a well-known provider gives a base URL.
    #[error(
        "agent {agent:?}: no base URL for provider {provider:?}; set agents[].base_url or LLM_BASE_URL"
    )]
    NoBaseUrl {
        /// The agent's id.
        agent: String,
        /// The agent's provider.
        provider: String,
    },
    /// The HTTP client could not be created (e.g. no TLS roots).
    #[error("cannot build the HTTP client: {source}")]
    Client {
        /// The client library's error.
        source: reqwest::Error,
    },
}

/// Where and how to reach an OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL, e.g. `https://openrouter.ai/api/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// Bearer token, when the endpoint needs one.
    pub api_key: Option<String>,
}

impl Endpoint {
    /// The endpoint for an agent: its `base_url`, else `LLM_BASE_URL`, else the provider's
    /// well-known URL; the key from `LLM_API_KEY`. `env` looks up environment variables.
    pub fn resolve(
        agent: &AgentConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, ProviderSetupError> {
        let known = match agent.provider.as_str() {
            "openai" => Some("https://api.openai.com/v1"),
            "openrouter" => Some("https://openrouter.ai/api/v1"),
            "ollama" => Some("http://localhost:11434/v1"),
            _ => None,
        };
        let base_url = agent
            .base_url
            .clone()
            .or_else(|| env("LLM_BASE_URL").filter(|v| !v.trim().is_empty()))
            .or_else(|| known.map(String::from))
            .ok_or_else(|| ProviderSetupError::NoBaseUrl {
                agent: agent.id.clone(),
                provider: agent.provider.clone(),
            })?;
        Ok(Endpoint {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: env("LLM_API_KEY").filter(|v| !v.trim().is_empty()),
        })
    }
}

/// The OpenAI-compatible HTTP client.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    endpoint: Endpoint,
}

/// Longest body excerpt kept in error messages.
const MAX_ERROR_BODY: usize = 300;

impl OpenAiProvider {
    /// A client for `endpoint`; `request_timeout` bounds each HTTP request.
    pub fn new(
        endpoint: Endpoint,
        request_timeout: Duration,
    ) -> Result<OpenAiProvider, ProviderSetupError> {
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .map_err(|source| ProviderSetupError::Client { source })?;
        Ok(OpenAiProvider { client, endpoint })
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Reads `retry-after-ms` (milliseconds) or `Retry-After` (seconds; HTTP dates are ignored).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = read("retry-after-ms") {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    read("retry-after").map(Duration::from_secs_f64)
}

#[async_trait]
impl ChatProvider for OpenAiProvider {
    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let url = format!("{}/chat/completions", self.endpoint.base_url);
        let mut builder = self.client.post(&url).json(request);
        if let Some(key) = &self.endpoint.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| ProviderError::Transport(format!("{url}: {e}")))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let body = response
            .text()
            .await
            .map_err(|e| ProviderError::Transport(format!("{url}: reading the body: {e}")))?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|e| {
                ProviderError::Decode(format!("{e}; body starts with {:?}", excerpt(&body)))
            });
        }
        let body = excerpt(&body);
        Err(match status.as_u16() {
            429 => ProviderError::RateLimited { retry_after, body },
            code @ 500..=599 => ProviderError::Server {
                status: code,
                retry_after,
                body,
            },
            code => ProviderError::Status { status: code, body },
        })
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(MAX_ERROR_BODY).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn agent(provider: &str, base_url: Option<&str>) -> AgentConfig {
        AgentConfig {
            id: "a".into(),
            kind: "builtin".into(),
            provider: provider.into(),
            model: "m".into(),
            max_steps: 1,
            temperature: 0.0,
            base_url: base_url.map(String::from),
        }
    }

    #[test]
    fn base_url_precedence_is_agent_then_env_then_provider() {
        let env = |name: &str| match name {
            "LLM_BASE_URL" => Some("http://env:1/v1/".to_string()),
            "LLM_API_KEY" => Some("secret".to_string()),
            _ => None,
        };
        let none = |_: &str| None;
        let e = Endpoint::resolve(&agent("openai", Some("http://agent:2/v1")), &env).unwrap();
        assert_eq!(
            (e.base_url.as_str(), e.api_key.as_deref()),
            ("http://agent:2/v1", Some("secret"))
        );
        let e = Endpoint::resolve(&agent("openai", None), &env).unwrap();
        assert_eq!(e.base_url, "http://env:1/v1");
        let e = Endpoint::resolve(&agent("openrouter", None), &none).unwrap();
        assert_eq!(
            (e.base_url.as_str(), e.api_key),
            ("https://openrouter.ai/api/v1", None)
        );
        let err = Endpoint::resolve(&agent("vllm", None), &none).unwrap_err();
        assert!(
            matches!(&err, ProviderSetupError::NoBaseUrl { provider, .. } if provider == "vllm"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("set agents[].base_url or LLM_BASE_URL"),
            "{err}"
        );
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::from_millis(150))
        );
        headers.remove("retry-after-ms");
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&headers), None);
    }

    #[test]
    fn only_429_and_5xx_are_retryable() {
        let limited = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            body: String::new(),
        };
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
        assert!(ProviderError::Server {
            status: 503,
            retry_after: None,
            body: String::new()
        }
        .is_retryable());
        assert!(!ProviderError::Status {
            status: 400,
            body: String::new()
        }
        .is_retryable());
        assert!(!ProviderError::Transport("x".into()).is_retryable());
        let usage = TokenUsage {
            prompt_tokens: 3,
            completion_tokens: 4,
            total_tokens: 0,
        };
        assert_eq!(usage.total(), 7);
    }
}
