//! `MicrobatchActor`: the single owner of the TigerBeetle client.
//!
//! Work items are transfer chains (one reserve = one linked chain; a complete's void, shrink
//! or overage = one chain each). The actor queues them and sends them as one
//! `create_transfers` request when `batch_max_events` events are waiting or
//! `flush_interval_us` has passed since the first one arrived, whichever comes first. An item
//! is never split across requests, and an item larger than the limit is refused with an
//! error. TigerBeetle reports failures only, by event index; the actor maps each index back
//! to its item and hands every item its own failures (item-relative indices).
//!
//! A client session has one request in flight; the next batch forms while it is out and
//! leaves the moment the reply arrives, so the connection stays busy under load and batches
//! grow with it. Work for several requests is split over the free sessions, so TigerBeetle
//! applies one part while the answers of another are handled here; under load the actor opens
//! more sessions, up to `tigerbeetle.sessions` (see [`pool`], which also says what several
//! sessions do to ordering and why that is safe).
//!
//! Faults: the TigerBeetle client never gives up on a dead server, so every call is bounded
//! by `request_timeout_ms` (a new client's first call, which registers its session and takes
//! ~0.6 s, gets [`FIRST_CALL_ALLOWANCE`] more). When a batch times out, it and everything
//! queued behind it answer `Unavailable` at once (they would wait on the same dead
//! connection), and every extra session is closed. The client is KEPT: it reconnects by itself when the cluster is back (the
//! session survives a server restart), and a fresh client would pay the registration again
//! on every call, which a short timeout never allows. Requests a timed-out call left inside
//! the client are sent when the cluster is back, in order and before anything newer (one
//! request in flight, and extra sessions are used only once session 0 answers again), so
//! later reads see them; the deterministic transfer ids make a late
//! arrival harmless (a retry answers `exists`, an abandoned reservation merely expires).
//! Only an evicted or shut-down session makes the actor start a new client. A batch refused
//! as too large (a `--development` server takes at most 253 events) lowers the limit and is
//! sent again; nothing of it had been sent. A client that cannot even be built answers
//! everything queued with that error at once.
//!
//! Every batch is logged at debug level with its size; a [`BatchRecorder`] (a test hook)
//! records every size, and [`TigerBeetleMetrics`] (Prometheus) every size and every request's
//! duration.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fewest events a request carries when queued work is split over several sessions
/// (smaller requests cost TigerBeetle more per event than they gain in overlap).
const SPLIT_MIN_EVENTS: usize = 256;

use actix::prelude::*;
use futures::future::join_all;
use log::{debug, warn};
use tigerbeetle_unofficial::error::{CreateTransfersError, SendErrorKind};
use tigerbeetle_unofficial::{transfer, Client, Transfer};
use tokio::sync::oneshot;

use super::metrics::TigerBeetleMetrics;
use super::transfers::Failures;
use crate::actors::outbox::Delivery;
use crate::backend::{BackendError, Fault};
use crate::settings::TigerBeetleSettings;

mod direct;
mod messages;
mod outbox;
#[cfg(test)]
mod outbox_tests;
mod pool;
#[cfg(test)]
mod server_tests;
mod session;
#[cfg(test)]
mod sessions_tests;

use pool::{Lane, Pool};
use session::Connection;
pub use session::FIRST_CALL_ALLOWANCE;

pub(crate) use messages::{lookup_accounts_paged, stopped, LOOKUP_PAGE};
pub use messages::{
    BatchRecord, BatchRecorder, BatchStats, CreateAccounts, GetStats, LookupAccounts,
    LookupTransfers, QueryAccounts, QueryTransfers, RefreshCandidate, Submit,
};
pub use outbox::Outbox;

/// Most events per request accepted by a server started with `--development` (a 32 KiB
/// request); the limit drops to this when a server refuses a larger batch.
pub const DEVELOPMENT_MAX_EVENTS: usize = 253;

/// Where one chain's answer goes.
pub type Reply = oneshot::Sender<Result<Failures, BackendError>>;

struct Queued {
    chain: Vec<Transfer>,
    reply: Reply,
}

/// The batching owner of the TigerBeetle client.
pub struct MicrobatchActor {
    config: TigerBeetleSettings,
    conn: Connection,
    queue: VecDeque<Queued>,
    queued_events: usize,
    max_events: usize,
    /// Whether session 0 (the current client) has a request in flight.
    primary_busy: bool,
    pool: Pool,
    timer: Option<SpawnHandle>,
    recorder: Option<BatchRecorder>,
    stats: BatchStats,
    metrics: Option<TigerBeetleMetrics>,
}

impl std::fmt::Debug for MicrobatchActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrobatchActor")
            .field("addresses", &self.config.addresses)
            .field("queued_events", &self.queued_events)
            .field("primary_busy", &self.primary_busy)
            .field("pool", &self.pool)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Actor for MicrobatchActor {
    type Context = Context<Self>;
}

impl MicrobatchActor {
    /// An actor for `config`; it connects lazily, on the first call. `recorder` records
    /// every batch size (tests).
    pub fn new(config: TigerBeetleSettings, recorder: Option<BatchRecorder>) -> Self {
        let max_events = config.batch_max_events.max(1);
        MicrobatchActor {
            config,
            conn: Connection::default(),
            queue: VecDeque::new(),
            queued_events: 0,
            max_events,
            primary_busy: false,
            pool: Pool::default(),
            timer: None,
            recorder,
            stats: BatchStats {
                max_events,
                ..BatchStats::default()
            },
            metrics: None,
        }
    }

    /// Records every request's size and duration in `metrics`.
    pub fn with_metrics(mut self, metrics: TigerBeetleMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records one unbatched request of `operation` that took `elapsed` (batches are
    /// recorded with their size by `record`).
    pub(super) fn observe_call(&self, operation: &str, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.observe_call(operation, elapsed);
        }
    }

    fn enqueue(&mut self, chain: Vec<Transfer>, reply: Reply) {
        if chain.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
        } else if chain.len() > self.max_events {
            let _ = reply.send(Err(Fault::ItemTooLarge {
                transfers: chain.len(),
                limit: self.max_events,
            }
            .into()));
        } else if chain
            .last()
            .is_some_and(|t| t.flags().contains(transfer::Flags::LINKED))
        {
            // An open chain would link into the next item of the batch.
            let _ = reply.send(Err(Fault::OpenChain.into()));
        } else {
            self.queued_events += chain.len();
            self.queue.push_back(Queued { chain, reply });
        }
    }

    /// Takes `events` off the count of queued events; more than is counted would be a
    /// bookkeeping bug (caught in debug builds, clamped at zero otherwise).
    fn unqueue_events(&mut self, events: usize) {
        let left = self.queued_events.checked_sub(events);
        debug_assert!(
            left.is_some(),
            "unqueueing {events} events with only {} queued",
            self.queued_events
        );
        self.queued_events = left.unwrap_or(0);
    }

    /// Sends now if a full batch is waiting, else makes sure the flush timer runs (unless
    /// every session is busy: then the next reply sends what waits).
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.queue.is_empty() {
            return;
        }
        if self.queued_events >= self.max_events {
            self.flush(ctx);
        } else if self.timer.is_none() && self.free_lanes() > 0 {
            let interval = self.config.flush_interval();
            self.timer = Some(ctx.run_later(interval, |act, ctx| {
                act.timer = None;
                act.flush(ctx);
            }));
        }
    }

    /// Sends the items at the head of the queue, one request per free session. Work for
    /// several requests (at least [`SPLIT_MIN_EVENTS`] each) is split evenly over the free
    /// sessions, so TigerBeetle applies one part while the answers of another are handled
    /// here; more requests follow while whole batches wait. With work for two requests and
    /// fewer than two sessions free, or no session free and a whole batch waiting, opens
    /// another session (up to `tigerbeetle.sessions`). If no client can be built,
    /// everything queued is answered with that error at once.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if self.queued_events >= 2 * SPLIT_MIN_EVENTS {
            self.open_session(ctx);
        }
        let parts = self
            .free_lanes()
            .min(self.queued_events / SPLIT_MIN_EVENTS)
            .max(1);
        let cap = self.queued_events.div_ceil(parts).min(self.max_events);
        let mut sent = 0;
        while !self.queue.is_empty() && (sent < parts || self.queued_events >= self.max_events) {
            match self.take_lane() {
                Some(Ok(lane)) => {
                    self.send_batch(lane, cap, ctx);
                    sent += 1;
                }
                Some(Err(e)) => {
                    warn!("{e}; failing {} queued work item(s)", self.queue.len());
                    for item in self.queue.drain(..) {
                        let _ = item.reply.send(Err(e.clone()));
                    }
                    self.queued_events = 0;
                    return;
                }
                None => {
                    if self.queued_events >= self.max_events {
                        self.open_session(ctx);
                    }
                    return;
                }
            }
        }
        self.schedule(ctx);
    }

    /// Takes the items at the head of the queue (never splitting one, at most `cap` events,
    /// which is within the limit) and sends them as one request on `lane`.
    fn send_batch(&mut self, lane: Lane, cap: usize, ctx: &mut Context<Self>) {
        let mut batch = Vec::new();
        let mut events: Vec<Transfer> = Vec::new();
        let mut ends = Vec::new();
        while let Some(front) = self.queue.front() {
            if !batch.is_empty() && events.len() + front.chain.len() > cap {
                break;
            }
            let Some(item) = self.queue.pop_front() else {
                break;
            };
            // Chain integrity: `enqueue` admitted only closed chains, so no item links into
            // the next one of the batch.
            debug_assert!(
                item.chain
                    .last()
                    .is_some_and(|t| !t.flags().contains(transfer::Flags::LINKED)),
                "a queued work item is empty or leaves its chain open"
            );
            self.unqueue_events(item.chain.len());
            events.extend_from_slice(&item.chain);
            ends.push(events.len());
            batch.push(item);
        }
        debug_assert!(
            batch.len() == 1 || events.len() <= self.max_events,
            "a batch of {} events exceeds the limit of {}",
            events.len(),
            self.max_events
        );
        debug_assert!(
            !self.queue.is_empty() || self.queued_events == 0,
            "{} events counted in an empty queue",
            self.queued_events
        );
        let record = BatchRecord {
            items: batch.len(),
            events: events.len(),
            session: lane.session,
        };
        let started = Instant::now();
        // Session 0 may not be registered yet; an extra one registered before joining.
        let timeout = if lane.session == 0 {
            self.call_timeout()
        } else {
            self.config.request_timeout()
        };
        let sender = Arc::clone(&lane.client);
        let request = async move {
            let result = tokio::time::timeout(timeout, sender.create_transfers(events)).await;
            (result, sender)
        };
        ctx.spawn(
            fut::wrap_future(request).map(move |(result, sender), act: &mut Self, ctx| {
                drop(sender);
                let keep = matches!(result, Ok(Ok(()) | Err(CreateTransfersError::Api(_))))
                    || too_large(&result);
                act.record(record, &result, started);
                // The session is free again before the answers go out, so whatever they
                // queue (a refused batch put back) can leave on it.
                let client = Arc::clone(&lane.client);
                act.return_lane(lane, keep);
                act.finish(&client, batch, &ends, result, timeout, ctx);
                act.release(client);
                act.schedule_after_reply(ctx);
            }),
        );
    }

    /// Counts and logs a batch that was sent (not one the client refused as too large).
    fn record(
        &mut self,
        record: BatchRecord,
        result: &Result<Result<(), CreateTransfersError>, tokio::time::error::Elapsed>,
        started: Instant,
    ) {
        if too_large(result) {
            return;
        }
        if let Some(recorder) = &self.recorder {
            recorder.push(record);
        }
        if let Some(metrics) = &self.metrics {
            metrics.observe_batch(record.events, started.elapsed());
        }
        self.stats.batches += 1;
        self.stats.items += record.items as u64;
        self.stats.events += record.events as u64;
        self.stats.largest = self.stats.largest.max(record.events);
        self.stats.sessions = self.stats.sessions.max(self.sessions_open());
        debug!(
            "tigerbeetle batch: {} items, {} events, {:?}",
            record.items,
            record.events,
            started.elapsed()
        );
    }

    /// After a reply: whatever queued meanwhile goes out at once (it has waited already).
    fn schedule_after_reply(&mut self, ctx: &mut Context<Self>) {
        if !self.queue.is_empty() {
            self.flush(ctx);
        }
    }

    fn finish(
        &mut self,
        client: &Arc<Client>,
        batch: Vec<Queued>,
        ends: &[usize],
        result: Result<Result<(), CreateTransfersError>, tokio::time::error::Elapsed>,
        bound: Duration,
        ctx: &mut Context<Self>,
    ) {
        if matches!(result, Ok(Ok(()) | Err(CreateTransfersError::Api(_)))) {
            self.answered(client);
        }
        let sent_events = ends.last().copied().unwrap_or(0);
        match result {
            Ok(Ok(())) => {
                for item in batch {
                    let _ = item.reply.send(Ok(Vec::new()));
                }
            }
            Ok(Err(CreateTransfersError::Api(errors))) => {
                let mut per_item: Vec<Failures> = vec![Vec::new(); batch.len()];
                for error in errors.as_slice() {
                    let index = error.index() as usize;
                    debug_assert!(
                        index < sent_events,
                        "TigerBeetle reported event {index} of a batch of {sent_events}"
                    );
                    let item = ends.partition_point(|&end| end <= index);
                    let start = if item == 0 { 0 } else { ends[item - 1] };
                    if let Some(failures) = per_item.get_mut(item) {
                        failures.push((index - start, error.kind()));
                    }
                }
                for (item, failures) in batch.into_iter().zip(per_item) {
                    let _ = item.reply.send(Ok(failures));
                }
            }
            Ok(Err(CreateTransfersError::Send(error)))
                if matches!(error.kind(), SendErrorKind::TooMuchData) && sent_events > 1 =>
            {
                self.shrink_and_requeue(batch, sent_events, ctx);
            }
            Ok(Err(CreateTransfersError::Send(error))) => {
                let e = self.send_error(client, error, "create_transfers");
                for item in batch {
                    let _ = item.reply.send(Err(e.clone()));
                }
            }
            Ok(Err(other)) => {
                let e = BackendError::from(Fault::Api {
                    operation: "create_transfers",
                    reason: other.to_string(),
                });
                for item in batch {
                    let _ = item.reply.send(Err(e.clone()));
                }
            }
            Err(_elapsed) => {
                self.stats.timeouts += 1;
                let e = self.timeout_error("create_transfers", bound);
                warn!("{e}; failing {} queued work item(s) too", self.queue.len());
                for item in batch.into_iter().chain(self.queue.drain(..)) {
                    let _ = item.reply.send(Err(e.clone()));
                }
                self.queued_events = 0;
                self.close_extra_sessions();
                self.timed_out(client, ctx);
            }
        }
    }

    /// The server refused a batch of `sent` events as too large (nothing was sent): lower the
    /// limit and put the items back at the head of the queue.
    fn shrink_and_requeue(&mut self, batch: Vec<Queued>, sent: usize, ctx: &mut Context<Self>) {
        let lowered = if sent > DEVELOPMENT_MAX_EVENTS {
            DEVELOPMENT_MAX_EVENTS
        } else {
            (sent / 2).max(1)
        };
        self.max_events = self.max_events.min(lowered);
        self.stats.max_events = self.max_events;
        warn!(
            "TigerBeetle refused a request of {sent} events as too large (a --development \
             server takes at most {DEVELOPMENT_MAX_EVENTS}); batch limit lowered to {}",
            self.max_events
        );
        for item in batch.into_iter().rev() {
            if item.chain.len() > self.max_events {
                let _ = item.reply.send(Err(Fault::ItemTooLarge {
                    transfers: item.chain.len(),
                    limit: self.max_events,
                }
                .into()));
            } else {
                self.queued_events += item.chain.len();
                self.queue.push_front(item);
            }
        }
        self.schedule(ctx);
    }
}

/// Whether the client refused a request as too large (nothing of it was sent).
fn too_large(
    result: &Result<Result<(), CreateTransfersError>, tokio::time::error::Elapsed>,
) -> bool {
    matches!(result, Ok(Err(CreateTransfersError::Send(e))) if matches!(e.kind(), SendErrorKind::TooMuchData))
}

impl Handler<Delivery<(Vec<Transfer>, Reply)>> for MicrobatchActor {
    type Result = ();

    fn handle(
        &mut self,
        Delivery(items): Delivery<(Vec<Transfer>, Reply)>,
        ctx: &mut Context<Self>,
    ) {
        for (chain, reply) in items {
            self.enqueue(chain, reply);
        }
        self.schedule(ctx);
    }
}

impl Handler<Submit> for MicrobatchActor {
    type Result = ResponseFuture<Vec<Result<Failures, BackendError>>>;

    fn handle(&mut self, Submit(chains): Submit, ctx: &mut Context<Self>) -> Self::Result {
        let receivers: Vec<_> = chains
            .into_iter()
            .map(|chain| {
                let (tx, rx) = oneshot::channel();
                self.enqueue(chain, tx);
                rx
            })
            .collect();
        self.schedule(ctx);
        Box::pin(async move {
            join_all(receivers)
                .await
                .into_iter()
                .map(messages::answered)
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "unqueueing 3 events with only 2 queued")]
    fn unqueueing_more_events_than_counted_is_a_bug() {
        let mut actor = MicrobatchActor::new(TigerBeetleSettings::default(), None);
        actor.queued_events = 2;
        actor.unqueue_events(3);
    }

    #[test]
    fn unqueueing_counts_down_to_zero() {
        let mut actor = MicrobatchActor::new(TigerBeetleSettings::default(), None);
        actor.queued_events = 5;
        actor.unqueue_events(2);
        actor.unqueue_events(3);
        assert_eq!(actor.queued_events, 0);
    }
}
