//! [`HttpLimiter`]: the [`Limiter`] over `ratelimiterd`'s HTTP API (SPEC §3).
//!
//! One shared `reqwest::Client` keeps connections alive between calls. Every call has its own
//! time bound. Errors are mapped so the caller can tell the outcomes apart:
//! - no answer in time → [`LimiterError::Timeout`] (unknown outcome: retry the same lease id);
//! - connection refused/reset, or any other failure to exchange the request →
//!   [`LimiterError::Transport`] (unknown outcome);
//! - HTTP 400 → [`LimiterError::Rejected`] with the server's `message`;
//! - any other status, or a body that is not the expected JSON → [`LimiterError::Protocol`].

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::limiter::{Limiter, LimiterError};
use crate::model::{
    BatchRequest, BatchResponse, CompleteRequest, CompleteResponse, LimitDefinition, LimitInfo,
    ReserveRequest, ReserveResponse,
};

/// Why an [`HttpLimiter`] could not be built.
#[derive(Debug, Error)]
pub enum HttpLimiterError {
    /// The base URL is not an absolute `http://` or `https://` URL.
    #[error("invalid limiter base URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The timeout is zero.
    #[error("limiter request timeout must be greater than 0")]
    ZeroTimeout,
    /// The HTTP client could not be created (e.g. no TLS roots).
    #[error("cannot create the HTTP client: {0}")]
    Client(String),
}

/// A [`Limiter`] that calls a `ratelimiterd` server.
#[derive(Debug, Clone)]
pub struct HttpLimiter {
    client: reqwest::Client,
    reserve_url: Url,
    complete_url: Url,
    reserve_batch_url: Url,
    complete_batch_url: Url,
    limits_url: Url,
    timeout: Duration,
}

/// The body of an HTTP 400 answer.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    message: String,
}

fn parse_base_url(base_url: &str) -> Result<Url, HttpLimiterError> {
    let invalid = |reason: String| HttpLimiterError::InvalidUrl {
        url: base_url.to_string(),
        reason,
    };
    let mut url = Url::parse(base_url.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host_str().map_or(true, str::is_empty) {
        return Err(invalid("the URL has no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("the URL must not have a query or fragment".into()));
    }
    // Routes are joined below the base path, so `http://h/prefix` serves `/prefix/v1/...`.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn join(base: &Url, route: &str) -> Result<Url, HttpLimiterError> {
    base.join(route).map_err(|e| HttpLimiterError::InvalidUrl {
        url: base.to_string(),
        reason: e.to_string(),
    })
}

impl HttpLimiter {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`); every call
    /// fails with [`LimiterError::Timeout`] if it has no complete answer within `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, HttpLimiterError> {
        if timeout.is_zero() {
            return Err(HttpLimiterError::ZeroTimeout);
        }
        let base = parse_base_url(base_url)?;
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(timeout)
            .build()
            .map_err(|e| HttpLimiterError::Client(e.to_string()))?;
        Ok(HttpLimiter {
            reserve_url: join(&base, "v1/reserve")?,
            complete_url: join(&base, "v1/complete")?,
            reserve_batch_url: join(&base, "v1/reserve/batch")?,
            complete_batch_url: join(&base, "v1/complete/batch")?,
            limits_url: join(&base, "v1/admin/limits/")?,
            client,
            timeout,
        })
    }

    /// The per-request time bound.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn map_send_error(&self, error: reqwest::Error) -> LimiterError {
        if error.is_timeout() {
            LimiterError::Timeout(self.timeout_ms())
        } else {
            LimiterError::Transport(describe(&error))
        }
    }

    /// Sends a request within the time bound; returns the status and the whole body.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), LimiterError> {
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.map_send_error(e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.map_send_error(e))?;
        Ok((status, bytes.to_vec()))
    }

    /// POSTs `body` to `url` and decodes a 200 answer as `R`.
    async fn post<B: Serialize + Sync, R: DeserializeOwned>(
        &self,
        url: &Url,
        body: &B,
    ) -> Result<R, LimiterError> {
        let (status, bytes) = self
            .exchange(self.client.post(url.clone()).json(body))
            .await?;
        match status {
            StatusCode::OK => read_json("POST", url, &bytes),
            StatusCode::BAD_REQUEST => Err(LimiterError::Rejected(
                match serde_json::from_slice::<ErrorBody>(&bytes) {
                    Ok(body) if !body.message.is_empty() => body.message,
                    Ok(body) if !body.error.is_empty() => body.error,
                    _ => snippet(&bytes),
                },
            )),
            other => Err(unexpected_status("POST", url, other, &bytes)),
        }
    }

    /// POSTs a batch envelope and checks that every request got its result.
    async fn post_batch<B: Serialize + Sync, R: DeserializeOwned>(
        &self,
        url: &Url,
        requests: Vec<B>,
    ) -> Result<Vec<R>, LimiterError> {
        let sent = requests.len();
        let response: BatchResponse<R> = self.post(url, &BatchRequest { requests }).await?;
        if response.results.len() != sent {
            return Err(LimiterError::Protocol(format!(
                "POST {}: {} result(s) for {sent} request(s)",
                url.path(),
                response.results.len()
            )));
        }
        Ok(response.results)
    }
}

/// Decodes a 200 answer to `method url`.
fn read_json<R: DeserializeOwned>(
    method: &str,
    url: &Url,
    bytes: &[u8],
) -> Result<R, LimiterError> {
    serde_json::from_slice(bytes).map_err(|e| {
        LimiterError::Protocol(format!(
            "{method} {}: cannot read the answer ({e}): {}",
            url.path(),
            snippet(bytes)
        ))
    })
}

/// An answer to `method url` with a status this client does not expect.
fn unexpected_status(method: &str, url: &Url, status: StatusCode, bytes: &[u8]) -> LimiterError {
    LimiterError::Protocol(format!(
        "{method} {}: HTTP {status}: {}",
        url.path(),
        snippet(bytes)
    ))
}

/// The error and its causes on one line (reqwest's top-level message alone says little).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most 200 characters of a body, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    if cut.is_empty() {
        "(empty body)".into()
    } else {
        cut
    }
}

#[async_trait]
impl Limiter for HttpLimiter {
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        self.post(&self.reserve_url, &request).await
    }

    async fn complete(&self, request: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        self.post(&self.complete_url, &request).await
    }

    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        self.post_batch(&self.reserve_batch_url, requests).await
    }

    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        self.post_batch(&self.complete_batch_url, requests).await
    }

    async fn definition(&self, key: &str) -> Result<Option<LimitDefinition>, LimiterError> {
        /// `GET /v1/admin/limits/{key}` answer.
        #[derive(Deserialize)]
        struct OneLimit {
            limit: LimitInfo,
        }
        let mut url = self.limits_url.clone();
        url.path_segments_mut()
            .map_err(|()| LimiterError::Protocol("the base URL cannot take a key".into()))?
            .pop_if_empty()
            .push(key);
        let (status, bytes) = self.exchange(self.client.get(url.clone())).await?;
        match status {
            StatusCode::OK => read_json::<OneLimit>("GET", &url, &bytes)
                .map(|one| Some(one.limit.state.definition)),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(unexpected_status("GET", &url, other, &bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/reserve")]
    #[case::trailing_slash("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/reserve")]
    #[case::prefix("https://limits.example/api", "https://limits.example/api/v1/reserve")]
    fn routes_are_joined_below_the_base(#[case] base: &str, #[case] reserve: &str) {
        let limiter = HttpLimiter::new(base, Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.reserve_url.as_str(), reserve);
        assert!(limiter
            .reserve_batch_url
            .as_str()
            .ends_with("/v1/reserve/batch"));
        assert!(limiter
            .complete_batch_url
            .as_str()
            .ends_with("/v1/complete/batch"));
    }

    #[rstest]
    #[case::empty("")]
    #[case::relative("127.0.0.1:8080/x")]
    #[case::ftp("ftp://127.0.0.1")]
    #[case::query("http://127.0.0.1:8080/?a=b")]
    fn bad_urls_are_refused_with_the_url_named(#[case] base: &str) {
        let err = HttpLimiter::new(base, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, HttpLimiterError::InvalidUrl { .. }), "{err}");
        assert!(err.to_string().contains("invalid limiter base URL"));
    }

    #[test]
    fn zero_timeout_is_refused() {
        let err = HttpLimiter::new("http://127.0.0.1:1", Duration::ZERO).unwrap_err();
        assert!(matches!(err, HttpLimiterError::ZeroTimeout));
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        assert_eq!(snippet(b""), "(empty body)");
        let long = vec![b'x'; 500];
        assert_eq!(snippet(&long).chars().count(), 201);
    }
}
