//! What the benchmarks share: the four keys of one LLM call and a memory-backend service on
//! which they never deny (the allow path is measured).

use std::sync::Arc;

use ratelimiter::actors::{MemoryBackend, MemoryOptions};
use ratelimiter::model::{LimitDefinition, LimitKind, RetryPolicy, SystemClock};
use ratelimiter::service::LimiterService;

/// The keys of one call: rpm, tpm, concurrency, tenant daily tokens.
pub const KEYS: [&str; 4] = [
    "global:llm:openai:gpt-4o:rpm",
    "global:llm:openai:gpt-4o:tpm",
    "global:llm:openai:gpt-4o:concurrency",
    "tenant:acme:llm:daily_tokens",
];

/// `key` with a capacity large enough never to deny.
fn definition(key: &str) -> LimitDefinition {
    let kind = if key.ends_with("concurrency") {
        LimitKind::Concurrency
    } else {
        LimitKind::Rolling
    };
    LimitDefinition::of_kind(key, kind, u64::MAX / 2, 3600)
}

/// A service on the memory backend laid out by `options`, with every key of [`KEYS`].
pub async fn service(options: MemoryOptions) -> Arc<LimiterService> {
    let backend = MemoryBackend::start_with(Arc::new(SystemClock), RetryPolicy::default(), options);
    let service = LimiterService::in_memory(backend)
        .await
        .expect("service starts");
    define(&service, &KEYS).await;
    service
}

/// Defines each of `keys` with a capacity large enough never to deny.
pub async fn define(service: &LimiterService, keys: &[&str]) {
    for key in keys {
        service.define(definition(key)).await.expect("defined");
    }
}
