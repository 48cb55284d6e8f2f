//! The coordinator's side of a snapshot: it gathers every key actor's live state with its own
//! lease table, and at start gives a loaded snapshot back to them.

use actix::prelude::*;
use futures::future::join_all;

use super::{ready, ReserveCoordinator, KEY_ACTOR_STOPPED};
use crate::actors::limit_actor::{BlockUntil, ExportKey, ImportKey};
use crate::backend::BackendError;
use crate::model::{MemorySnapshot, SNAPSHOT_VERSION};

/// Takes a snapshot of the live state, unless nothing changed since `unless_generation`.
/// Answers the state's generation with the snapshot.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<(u64, MemorySnapshot)>, BackendError>")]
pub struct TakeSnapshot {
    /// The generation of the last snapshot saved; `None` takes one whatever changed.
    pub unless_generation: Option<u64>,
}

/// Gives a loaded snapshot back to the lease table and the key actors (at start).
#[derive(Debug, Message)]
#[rtype(result = "Result<RestoreSummary, BackendError>")]
pub struct RestoreSnapshot(pub MemorySnapshot);

/// Counts every key's whole capacity in use until `since_ms` plus the key's longest hold
/// (see [`BlockUntil`]): used when a snapshot exists but cannot be read.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, BackendError>")]
pub struct BlockAllUntil {
    /// When the unreadable snapshot was written (Unix ms).
    pub since_ms: i64,
}

/// What a restore took in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Keys with live reservations or debt taken in.
    pub keys: usize,
    /// Live reservations and holds taken in (expired ones are dropped).
    pub reservations: usize,
    /// Remembered leases taken in.
    pub leases: usize,
    /// Keys of the snapshot that are not defined now; their state is dropped.
    pub unknown_keys: Vec<String>,
}

impl Handler<TakeSnapshot> for ReserveCoordinator {
    type Result = ResponseActFuture<Self, Result<Option<(u64, MemorySnapshot)>, BackendError>>;

    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        let generation = self.generation;
        if msg.unless_generation == Some(generation) {
            return ready(Ok(None));
        }
        let now_ms = self.clock.now_ms();
        let leases = self.leases.export(now_ms);
        let exports: Vec<_> = self
            .keys
            .values()
            .map(|entry| entry.actor.send(ExportKey { now_ms }))
            .collect();
        Box::pin(fut::wrap_future(async move {
            let mut keys = Vec::with_capacity(exports.len());
            for export in join_all(exports).await {
                let key = export.map_err(|_| BackendError::from(KEY_ACTOR_STOPPED))?;
                if !key.is_empty() {
                    keys.push(key);
                }
            }
            keys.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(Some((
                generation,
                MemorySnapshot {
                    version: SNAPSHOT_VERSION,
                    taken_at_ms: now_ms,
                    keys,
                    leases,
                },
            )))
        }))
    }
}

impl Handler<RestoreSnapshot> for ReserveCoordinator {
    type Result = ResponseActFuture<Self, Result<RestoreSummary, BackendError>>;

    fn handle(
        &mut self,
        RestoreSnapshot(snapshot): RestoreSnapshot,
        _: &mut Context<Self>,
    ) -> Self::Result {
        self.generation += 1;
        let now_ms = self.clock.now_ms();
        let mut summary = RestoreSummary {
            leases: self.leases.import(snapshot.leases, now_ms),
            ..RestoreSummary::default()
        };
        let mut imports = Vec::new();
        for key in snapshot.keys {
            match self.keys.get(&key.key) {
                Some(entry) => imports.push(entry.actor.send(ImportKey {
                    snapshot: key,
                    now_ms,
                })),
                None => summary.unknown_keys.push(key.key),
            }
        }
        Box::pin(fut::wrap_future(async move {
            for imported in join_all(imports).await {
                let imported = imported.map_err(|_| BackendError::from(KEY_ACTOR_STOPPED))?;
                if imported > 0 {
                    summary.keys += 1;
                    summary.reservations += imported;
                }
            }
            Ok(summary)
        }))
    }
}

impl Handler<BlockAllUntil> for ReserveCoordinator {
    type Result = ResponseActFuture<Self, Result<usize, BackendError>>;

    fn handle(&mut self, msg: BlockAllUntil, _: &mut Context<Self>) -> Self::Result {
        self.generation += 1;
        let now_ms = self.clock.now_ms();
        let blocks: Vec<_> = self
            .keys
            .values()
            .filter_map(|entry| {
                let until_ms = msg.since_ms.saturating_add(entry.hold_ms);
                (until_ms > now_ms).then(|| entry.actor.send(BlockUntil { until_ms }))
            })
            .collect();
        Box::pin(fut::wrap_future(async move {
            let count = blocks.len();
            for block in join_all(blocks).await {
                block.map_err(|_| BackendError::from(KEY_ACTOR_STOPPED))?;
            }
            Ok(count)
        }))
    }
}
