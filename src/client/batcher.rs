//! The batcher (SPEC §6): an actor that turns many single reserve/complete calls into few
//! batch calls on the limiter it wraps.
//!
//! Reserves and completes gather in separate buffers; a buffer is sent as one batch call when
//! it holds `size` items or `flush_ms` after its first item arrived, whichever comes first. A
//! batch call never mixes reserves and completes. Batch calls run concurrently with the
//! actor, so the next batch forms while one is in flight. Every caller waits on its own
//! one-shot channel and gets exactly the answer to its own request. If a batch call fails,
//! every item of it fails with that same error (a timeout or transport error is an unknown
//! outcome for each item: retry it with the same lease id).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, SpawnHandle};
use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::oneshot;

use super::limiter::{Limiter, LimiterError};
use crate::model::{
    CompleteRequest, CompleteResponse, LimitDefinition, ReserveRequest, ReserveResponse,
};

/// When a buffer is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most items in one batch call; at least 1 (keep it at or below the server's batch limit).
    pub size: usize,
    /// Longest wait, in ms, between the first item of a buffer and its batch call; at least 1.
    pub flush_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            size: 128,
            flush_ms: 2,
        }
    }
}

/// A batch setting that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchConfigError {
    /// `size` is 0.
    #[error("batch.size: must be at least 1")]
    ZeroSize,
    /// `flush_ms` is 0.
    #[error("batch.flush_ms: must be at least 1")]
    ZeroFlush,
}

impl BatchConfig {
    /// Checks that both settings are at least 1.
    pub fn validate(&self) -> Result<(), BatchConfigError> {
        if self.size == 0 {
            return Err(BatchConfigError::ZeroSize);
        }
        if self.flush_ms == 0 {
            return Err(BatchConfigError::ZeroFlush);
        }
        Ok(())
    }
}

/// Counters of the batch calls made so far.
#[derive(Debug, Default)]
struct Counters {
    reserve_batches: AtomicU64,
    reserve_items: AtomicU64,
    complete_batches: AtomicU64,
    complete_items: AtomicU64,
}

/// How many batch calls the batcher made and how many items they carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batch reserve calls made.
    pub reserve_batches: u64,
    /// Reserve items carried by them.
    pub reserve_items: u64,
    /// Batch complete calls made.
    pub complete_batches: u64,
    /// Complete items carried by them.
    pub complete_items: u64,
}

type Reply<R> = oneshot::Sender<Result<R, LimiterError>>;

/// One kind's pending items, their callers, and the flush timer started by the first item.
struct Buffer<Req, Resp> {
    requests: Vec<Req>,
    replies: Vec<Reply<Resp>>,
    timer: Option<SpawnHandle>,
}

impl<Req, Resp> Buffer<Req, Resp> {
    fn new() -> Self {
        Buffer {
            requests: Vec::new(),
            replies: Vec::new(),
            timer: None,
        }
    }

    fn take(&mut self) -> (Vec<Req>, Vec<Reply<Resp>>) {
        (
            std::mem::take(&mut self.requests),
            std::mem::take(&mut self.replies),
        )
    }
}

/// Which buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reserve,
    Complete,
}

/// The actor owning both buffers.
pub struct BatcherActor {
    inner: Arc<dyn Limiter>,
    config: BatchConfig,
    reserves: Buffer<ReserveRequest, ReserveResponse>,
    completes: Buffer<CompleteRequest, CompleteResponse>,
    counters: Arc<Counters>,
}

impl Actor for BatcherActor {
    type Context = Context<Self>;
}

/// Queues one reserve; the answer arrives on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
struct QueueReserve {
    request: ReserveRequest,
    reply: Reply<ReserveResponse>,
}

/// Queues one complete; the answer arrives on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
struct QueueComplete {
    request: CompleteRequest,
    reply: Reply<CompleteResponse>,
}

/// Hands each caller its own result; a failed call or a wrong result count fails them all.
fn deliver<R>(call: &str, result: Result<Vec<R>, LimiterError>, replies: Vec<Reply<R>>) {
    let sent = replies.len();
    match result {
        Ok(results) if results.len() == sent => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that gave up no longer listens; nothing to do for it.
                let _ = reply.send(Ok(result));
            }
        }
        Ok(results) => {
            let error = LimiterError::Protocol(format!(
                "{call}: {} result(s) for {sent} request(s)",
                results.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

impl BatcherActor {
    /// A batcher over `inner`; start it with [`BatchingLimiter::start`].
    fn new(inner: Arc<dyn Limiter>, config: BatchConfig, counters: Arc<Counters>) -> Self {
        BatcherActor {
            inner,
            config,
            reserves: Buffer::new(),
            completes: Buffer::new(),
            counters,
        }
    }

    /// Called after an item joined the `kind` buffer now holding `len` items.
    fn after_push(&mut self, kind: Kind, len: usize, ctx: &mut Context<Self>) {
        if len >= self.config.size {
            self.flush(kind, ctx);
        } else if len == 1 {
            let delay = Duration::from_millis(self.config.flush_ms);
            let handle = ctx.run_later(delay, move |act, ctx| {
                match kind {
                    Kind::Reserve => act.reserves.timer = None,
                    Kind::Complete => act.completes.timer = None,
                }
                act.flush(kind, ctx);
            });
            match kind {
                Kind::Reserve => self.reserves.timer = Some(handle),
                Kind::Complete => self.completes.timer = Some(handle),
            }
        }
    }

    /// Sends the `kind` buffer as one batch call, without waiting for its answer.
    fn flush(&mut self, kind: Kind, ctx: &mut Context<Self>) {
        let inner = self.inner.clone();
        let counters = self.counters.clone();
        match kind {
            Kind::Reserve => {
                if let Some(timer) = self.reserves.timer.take() {
                    ctx.cancel_future(timer);
                }
                let (requests, replies) = self.reserves.take();
                if requests.is_empty() {
                    return;
                }
                counters.reserve_batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .reserve_items
                    .fetch_add(requests.len() as u64, Ordering::Relaxed);
                actix::spawn(async move {
                    let result = inner.batch_reserve(requests).await;
                    deliver("batch reserve", result, replies);
                });
            }
            Kind::Complete => {
                if let Some(timer) = self.completes.timer.take() {
                    ctx.cancel_future(timer);
                }
                let (requests, replies) = self.completes.take();
                if requests.is_empty() {
                    return;
                }
                counters.complete_batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .complete_items
                    .fetch_add(requests.len() as u64, Ordering::Relaxed);
                actix::spawn(async move {
                    let result = inner.batch_complete(requests).await;
                    deliver("batch complete", result, replies);
                });
            }
        }
    }
}

impl Handler<QueueReserve> for BatcherActor {
    type Result = ();

    fn handle(&mut self, msg: QueueReserve, ctx: &mut Context<Self>) {
        self.reserves.requests.push(msg.request);
        self.reserves.replies.push(msg.reply);
        let len = self.reserves.requests.len();
        self.after_push(Kind::Reserve, len, ctx);
    }
}

impl Handler<QueueComplete> for BatcherActor {
    type Result = ();

    fn handle(&mut self, msg: QueueComplete, ctx: &mut Context<Self>) {
        self.completes.requests.push(msg.request);
        self.completes.replies.push(msg.reply);
        let len = self.completes.requests.len();
        self.after_push(Kind::Complete, len, ctx);
    }
}

/// A cloneable [`Limiter`] handle to a running [`BatcherActor`].
#[derive(Clone)]
pub struct BatchingLimiter {
    addr: Addr<BatcherActor>,
    counters: Arc<Counters>,
    /// The wrapped limiter, asked directly for what is not batched (definitions).
    inner: Arc<dyn Limiter>,
}

impl std::fmt::Debug for BatchingLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingLimiter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl BatchingLimiter {
    /// Starts a batcher over `inner`. Must be called inside a running actix System.
    pub fn start(inner: Arc<dyn Limiter>, config: BatchConfig) -> Result<Self, BatchConfigError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let addr = BatcherActor::new(inner.clone(), config, counters.clone()).start();
        Ok(BatchingLimiter {
            addr,
            counters,
            inner,
        })
    }

    /// The batch calls made so far.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            reserve_batches: self.counters.reserve_batches.load(Ordering::Relaxed),
            reserve_items: self.counters.reserve_items.load(Ordering::Relaxed),
            complete_batches: self.counters.complete_batches.load(Ordering::Relaxed),
            complete_items: self.counters.complete_items.load(Ordering::Relaxed),
        }
    }
}

/// The caller's answer; a batcher that stopped before answering is a transport failure
/// (the request may or may not have reached the limiter).
/// Queues one message per request (all before waiting, so they can share batch calls) and
/// collects the answers in request order.
async fn queue_each<Q, R, M>(
    addr: &Addr<BatcherActor>,
    requests: Vec<Q>,
    message: impl Fn(Q, Reply<R>) -> M,
) -> Result<Vec<R>, LimiterError>
where
    M: Message<Result = ()> + Send + 'static,
    BatcherActor: Handler<M>,
{
    let answers: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (reply, answer) = oneshot::channel();
            addr.do_send(message(request, reply));
            answer
        })
        .collect();
    let mut results = Vec::with_capacity(answers.len());
    for answer in answers {
        results.push(wait(answer).await?);
    }
    Ok(results)
}

async fn wait<R>(reply: oneshot::Receiver<Result<R, LimiterError>>) -> Result<R, LimiterError> {
    reply
        .await
        .unwrap_or_else(|_| Err(LimiterError::Transport("the batcher stopped".into())))
}

#[async_trait]
impl Limiter for BatchingLimiter {
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveResponse, LimiterError> {
        let (reply, answer) = oneshot::channel();
        self.addr.do_send(QueueReserve { request, reply });
        wait(answer).await
    }

    async fn complete(&self, request: CompleteRequest) -> Result<CompleteResponse, LimiterError> {
        let (reply, answer) = oneshot::channel();
        self.addr.do_send(QueueComplete { request, reply });
        wait(answer).await
    }

    /// Queues every item (they may share batch calls with other callers' items); results
    /// come back in request order.
    async fn batch_reserve(
        &self,
        requests: Vec<ReserveRequest>,
    ) -> Result<Vec<ReserveResponse>, LimiterError> {
        queue_each(&self.addr, requests, |request, reply| QueueReserve {
            request,
            reply,
        })
        .await
    }

    /// Queues every item; results come back in request order.
    async fn batch_complete(
        &self,
        requests: Vec<CompleteRequest>,
    ) -> Result<Vec<CompleteResponse>, LimiterError> {
        queue_each(&self.addr, requests, |request, reply| QueueComplete {
            request,
            reply,
        })
        .await
    }

    /// Not batched: asks the wrapped limiter.
    async fn definition(&self, key: &str) -> Result<Option<LimitDefinition>, LimiterError> {
        self.inner.definition(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rules_name_the_field() {
        assert_eq!(BatchConfig::default().validate(), Ok(()));
        let zero_size = BatchConfig {
            size: 0,
            flush_ms: 1,
        };
        assert!(zero_size
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("batch.size"));
        let zero_flush = BatchConfig {
            size: 1,
            flush_ms: 0,
        };
        assert!(zero_flush
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("batch.flush_ms"));
    }

    #[test]
    fn deliver_fails_everyone_on_count_mismatch() {
        let (a, mut ra) = oneshot::channel::<Result<u8, LimiterError>>();
        let (b, mut rb) = oneshot::channel::<Result<u8, LimiterError>>();
        deliver("test", Ok(vec![1]), vec![a, b]);
        assert!(matches!(
            ra.try_recv().unwrap(),
            Err(LimiterError::Protocol(_))
        ));
        assert!(matches!(
            rb.try_recv().unwrap(),
            Err(LimiterError::Protocol(_))
        ));
    }
}
