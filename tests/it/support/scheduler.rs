//! Shared by the scheduler tests: a scripted fake limiter that records every call, and
//! helpers to build configs, specs and execute steps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use ratelimiter::client::{JobOutput, JobSpec, Limiter, LimiterError, SchedulerConfig};
use ratelimiter::model::{CompleteRequest, CompleteResponse, ReserveRequest, ReserveResponse};

pub type Script =
    dyn Fn(&ReserveRequest, usize) -> Result<ReserveResponse, LimiterError> + Send + Sync;

/// A limiter whose reserve answers come from a script (given the request and how many
/// reserves came before it); it records every call.
pub struct FakeLimiter {
    script: Box<Script>,
    /// How long the answer to reserve number `i` takes, in ms.
    delay_ms: Box<dyn Fn(usize) -> u64 + Send + Sync>,
    reserves: Mutex<Vec<ReserveRequest>>,
    completes: Mutex<Vec<CompleteRequest>>,
}

impl FakeLimiter {
    pub fn new(
        script: impl Fn(&ReserveRequest, usize) -> Result<ReserveResponse, LimiterError>
            + Send
            + Sync
            + 'static,
    ) -> Arc<Self> {
        Self::slow(script, |_| 0)
    }

    /// Like [`FakeLimiter::new`], answering reserve number `i` only after `delay_ms(i)` ms.
    pub fn slow(
        script: impl Fn(&ReserveRequest, usize) -> Result<ReserveResponse, LimiterError>
            + Send
            + Sync
            + 'static,
        delay_ms: impl Fn(usize) -> u64 + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FakeLimiter {
            script: Box::new(script),
            delay_ms: Box::new(delay_ms),
            reserves: Mutex::new(Vec::new()),
            completes: Mutex::new(Vec::new()),
        })
    }

    pub fn allow_all() -> Arc<Self> {
        Self::new(|_, _| Ok(ReserveResponse::allowed(1)))
    }

    pub fn reserves(&self) -> Vec<ReserveRequest> {
        self.reserves.lock().unwrap().clone()
    }

    pub fn completes(&self) -> Vec<CompleteRequest> {
        self.completes.lock().unwrap().clone()
    }

    pub fn reserves_for(&self, provider: &str) -> Vec<ReserveRequest> {
        let marker = format!(":{provider}:");
        self.reserves()
            .into_iter()
            .filter(|r| r.requirements.iter().any(|q| q.key.contains(&marker)))
            .collect()
    }
}

#[async_trait]
impl Limiter for FakeLimiter {
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        let index = {
            let mut reserves = self.reserves.lock().unwrap();
            reserves.push(request.clone());
            reserves.len() - 1
        };
        let answer = (self.script)(&request, index);
        let delay = (self.delay_ms)(index);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        answer
    }

    async fn complete(&self, request: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        self.completes.lock().unwrap().push(request);
        Ok(CompleteResponse::ok())
    }

    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        let mut out = Vec::new();
        for r in requests {
            out.push(self.reserve(r).await?);
        }
        Ok(out)
    }

    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        let mut out = Vec::new();
        for r in requests {
            out.push(self.complete(r).await?);
        }
        Ok(out)
    }
}

pub fn config(workers: usize) -> SchedulerConfig {
    SchedulerConfig {
        workers,
        max_transport_retries: 3,
        backoff_base_ms: 5,
        backoff_max_ms: 20,
        jitter_ms: 0,
        max_retry_wait_ms: 10_000,
    }
}

pub fn spec(provider: &str) -> JobSpec {
    JobSpec::new(provider, "m", 10, 5)
}

/// An execute step that takes `ms` and reports `tokens`, returning `value`.
pub fn step<T: Send + 'static>(
    ms: u64,
    tokens: u64,
    value: T,
) -> impl FnOnce() -> BoxFuture<'static, JobOutput<T>> + Send + 'static {
    move || {
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            JobOutput {
                value,
                actual_tokens: tokens,
            }
        }
        .boxed()
    }
}
