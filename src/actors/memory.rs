//! The in-memory backend: a [`Backend`] whose state lives in actors of this process.

use std::sync::Arc;

use actix::prelude::*;
use async_trait::async_trait;

pub use super::coordinator::RestoreSummary;
use super::coordinator::{
    BlockAllUntil, Complete, Decrease, Define, KeyUsage, Ping, Reserve, ReserveCoordinator,
    RestoreSnapshot, TakeSnapshot,
};
use crate::backend::{Backend, BackendError, Outage, ReserveOutcome};
use crate::model::leases::DEFAULT_MAX_LEASES;
use crate::model::{
    CompleteCommand, LimitState, MemorySnapshot, ReserveCommand, RetryPolicy, SharedClock, Usage,
};

/// The memory backend's handle; cheap to share.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    coordinator: Addr<ReserveCoordinator>,
}

fn mailbox(error: MailboxError) -> BackendError {
    Outage::MailboxClosed {
        worker: "memory backend",
        reason: error.to_string(),
    }
    .into()
}

impl MemoryBackend {
    /// Starts the coordinator on the current actix arbiter (call inside a running System).
    pub fn start(clock: SharedClock, policy: RetryPolicy) -> Arc<Self> {
        Self::start_with_lease_capacity(clock, policy, DEFAULT_MAX_LEASES)
    }

    /// Like [`MemoryBackend::start`], remembering at most `max_leases` leases.
    pub fn start_with_lease_capacity(
        clock: SharedClock,
        policy: RetryPolicy,
        max_leases: usize,
    ) -> Arc<Self> {
        let coordinator = ReserveCoordinator::new(clock, policy, max_leases).start();
        Arc::new(MemoryBackend { coordinator })
    }
}

impl MemoryBackend {
    /// A snapshot of every live reservation, hold, debt and remembered lease, with the
    /// generation of the state it shows; `None` if the state is still at `unless_generation`.
    pub async fn snapshot(
        &self,
        unless_generation: Option<u64>,
    ) -> Result<Option<(u64, MemorySnapshot)>, BackendError> {
        self.coordinator
            .send(TakeSnapshot { unless_generation })
            .await
            .map_err(mailbox)?
    }

    /// Takes a snapshot's live state back in (at start, after the definitions and before any
    /// reserve). Expired entries and keys not defined now are dropped.
    pub async fn restore(&self, snapshot: MemorySnapshot) -> Result<RestoreSummary, BackendError> {
        self.coordinator
            .send(RestoreSnapshot(snapshot))
            .await
            .map_err(mailbox)?
    }

    /// Counts every key's whole capacity in use until `since_ms` plus its longest hold: what
    /// was reserved before `since_ms` is unknown, so nothing may be granted twice. Answers how
    /// many keys are blocked.
    pub async fn block_all_until(&self, since_ms: i64) -> Result<usize, BackendError> {
        self.coordinator
            .send(BlockAllUntil { since_ms })
            .await
            .map_err(mailbox)?
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn define(&self, state: &LimitState) -> Result<(), BackendError> {
        self.coordinator
            .send(Define(state.definition.clone()))
            .await
            .map_err(mailbox)
    }

    async fn reserve(&self, command: ReserveCommand) -> Result<ReserveOutcome, BackendError> {
        self.coordinator
            .send(Reserve(command))
            .await
            .map_err(mailbox)?
    }

    async fn complete(&self, command: CompleteCommand) -> Result<(), BackendError> {
        self.coordinator
            .send(Complete(command))
            .await
            .map_err(mailbox)?
    }

    async fn usage(&self, key: &str) -> Result<Usage, BackendError> {
        self.coordinator
            .send(KeyUsage(key.to_string()))
            .await
            .map_err(mailbox)?
    }

    async fn try_decrease(&self, key: &str, to: u64) -> Result<bool, BackendError> {
        self.coordinator
            .send(Decrease {
                key: key.to_string(),
                to,
            })
            .await
            .map_err(mailbox)?
    }

    async fn probe(&self) -> Result<(), BackendError> {
        self.coordinator.send(Ping).await.map_err(mailbox)?
    }
}
