//! The in-memory backend: a [`Backend`] whose state lives in actors of this process — key
//! shards (keys placed by group) spread over one or more arbiters (threads), coordinated by a
//! [`ReserveCoordinator`] that runs in each caller's task.

use std::sync::Arc;

use actix::prelude::*;
use async_trait::async_trait;

use super::coordinator::ReserveCoordinator;
pub use super::coordinator::RestoreSummary;
use super::key_shard::ShardHandle;
use crate::backend::{Backend, BackendError, ReserveOutcome, Started};
use crate::model::leases::DEFAULT_MAX_LEASES;
use crate::model::{
    CompleteCommand, LimitState, MemorySnapshot, ReserveCommand, RetryPolicy, SharedClock, Usage,
};

/// How the memory backend is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryOptions {
    /// Most leases in flight, and separately most settled leases (see the lease table).
    pub lease_capacity: usize,
    /// Arbiters (threads) the key shards' actors run on, shard `i` on arbiter
    /// `i % arbiters`. 0 runs every shard on the caller's own arbiter (no extra thread: for
    /// single-threaded embedding).
    pub arbiters: usize,
    /// Key shards, each one `KeyShard` actor and one lock over its keys; keys are spread over
    /// them by a hash of the key's group (its name up to the last `:`). Callers apply their
    /// work on a shard they find idle on their own thread, so callers on different shards
    /// work in parallel whatever the arbiter count. At least 1 (0 is taken as 1).
    pub shards: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            lease_capacity: DEFAULT_MAX_LEASES,
            arbiters: default_arbiters(),
            shards: default_shards(),
        }
    }
}

/// One arbiter by default: on a 2-core machine the HTTP workers and a second shard thread
/// compete for the cores, and the callers apply most work on their own threads anyway
/// (BENCHMARKS.md, issue #9 section). Raise it on larger machines and measure.
pub fn default_arbiters() -> usize {
    1
}

/// Sixteen shards by default: two callers on different models or tenants then meet on one
/// shard one time in sixteen, while a request's keys (at most a model group and a tenant
/// group) still take at most two shards.
pub fn default_shards() -> usize {
    16
}

/// The shards' arbiters, stopped when the last handle of the backend goes.
struct ArbiterPool(Vec<Arbiter>);

impl std::fmt::Debug for ArbiterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArbiterPool({} arbiters)", self.0.len())
    }
}

impl Drop for ArbiterPool {
    fn drop(&mut self) {
        for arbiter in &self.0 {
            arbiter.stop();
        }
    }
}

/// The memory backend's handle; cheap to share.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    coordinator: Arc<ReserveCoordinator>,
    _arbiters: Arc<ArbiterPool>,
}

impl MemoryBackend {
    /// Starts the backend with the default options (call inside a running actix System).
    pub fn start(clock: SharedClock, policy: RetryPolicy) -> Arc<Self> {
        Self::start_with(clock, policy, MemoryOptions::default())
    }

    /// Like [`MemoryBackend::start`], remembering at most `max_leases` leases.
    pub fn start_with_lease_capacity(
        clock: SharedClock,
        policy: RetryPolicy,
        max_leases: usize,
    ) -> Arc<Self> {
        let options = MemoryOptions {
            lease_capacity: max_leases,
            ..MemoryOptions::default()
        };
        Self::start_with(clock, policy, options)
    }

    /// Starts `options.shards` key shards over `options.arbiters` new arbiters (round
    /// robin), or on the current arbiter for 0.
    pub fn start_with(
        clock: SharedClock,
        policy: RetryPolicy,
        options: MemoryOptions,
    ) -> Arc<Self> {
        let arbiters: Vec<Arbiter> = (0..options.arbiters).map(|_| Arbiter::new()).collect();
        let shards = (0..options.shards.max(1))
            .map(|shard| {
                let arbiter = arbiters
                    .get(shard % arbiters.len().max(1))
                    .map(Arbiter::handle);
                ShardHandle::start(policy, arbiter.as_ref())
            })
            .collect();
        let coordinator = ReserveCoordinator::new(clock, policy, options.lease_capacity, shards);
        Arc::new(MemoryBackend {
            coordinator: Arc::new(coordinator),
            _arbiters: Arc::new(ArbiterPool(arbiters)),
        })
    }

    /// Which of `shards` shards owns `key` (for tests and diagnostics: keys are spread by a
    /// fixed hash of their group, the name up to the last `:`; the keys of one group share a
    /// shard).
    pub fn shard_of(key: &str, shards: usize) -> usize {
        super::placement::shard_of(key, shards)
    }

    /// A snapshot of every live reservation, hold, debt and remembered lease, with the
    /// generation of the state it shows; `None` if the state is still at `unless_generation`.
    pub async fn snapshot(
        &self,
        unless_generation: Option<u64>,
    ) -> Result<Option<(u64, MemorySnapshot)>, BackendError> {
        self.coordinator.snapshot(unless_generation).await
    }

    /// Takes a snapshot's live state back in (at start, after the definitions and before any
    /// reserve). Expired entries and keys not defined now are dropped.
    pub async fn restore(&self, snapshot: MemorySnapshot) -> Result<RestoreSummary, BackendError> {
        self.coordinator.restore(snapshot).await
    }

    /// Counts every key's whole capacity in use until `since_ms` plus its longest hold: what
    /// was reserved before `since_ms` is unknown, so nothing may be granted twice. Answers how
    /// many keys are blocked.
    pub async fn block_all_until(&self, since_ms: i64) -> Result<usize, BackendError> {
        self.coordinator.block_all_until(since_ms).await
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn define(&self, state: &LimitState) -> Result<(), BackendError> {
        self.coordinator.define(state.definition.clone()).await
    }

    async fn reserve(&self, command: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        self.coordinator.reserve(command).await
    }

    async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError> {
        self.coordinator.complete(command).await
    }

    fn start_reserve(&self, command: ReserveCommand) -> Started<'_, ReserveOutcome> {
        self.coordinator.start_reserve(command)
    }

    fn start_complete(&self, command: CompleteCommand) -> Started<'_, ()> {
        self.coordinator.start_complete(command)
    }

    async fn usage(&self, key: &str) -> Result<Usage, BackendError> {
        self.coordinator.usage(key).await
    }

    async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError> {
        self.coordinator.try_decrease(key, to).await
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.coordinator.ping().await
    }
}
