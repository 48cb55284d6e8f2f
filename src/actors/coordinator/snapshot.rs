//! The coordinator's side of a snapshot: it gathers every shard's live key state with the
//! lease table, and at start gives a loaded snapshot back to them.

use std::collections::HashMap;

use futures::future::join_all;

use super::{stopped, KeyName, ReserveCoordinator};
use crate::actors::key_shard::{BlockKeys, ExportKeys, ImportKeys};
use crate::backend::BackendError;
use crate::model::leases::LeaseRecord;
use crate::model::{KeySnapshot, MemorySnapshot, SNAPSHOT_VERSION};

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

impl ReserveCoordinator {
    /// A snapshot of the live state with its generation, unless the state is still at
    /// `unless_generation`.
    pub async fn snapshot(
        &self,
        unless_generation: Option<u64>,
    ) -> Result<Option<(u64, MemorySnapshot)>, BackendError> {
        let generation = self.generation();
        if unless_generation == Some(generation) {
            return Ok(None);
        }
        let now_ms = self.clock.now_ms();
        let started = std::time::Instant::now();
        // One part of the lease book locked at a time.
        let leases: Vec<LeaseRecord> = self
            .books
            .iter()
            .flat_map(|book| self.lock_book(book).table.export(now_ms))
            .collect();
        let leases_ms = started.elapsed().as_millis();
        let exports = join_all(
            self.shards
                .iter()
                .map(|s| s.addr.send(ExportKeys { now_ms })),
        )
        .await;
        log::debug!(
            "snapshot export: {} leases in {leases_ms} ms under the lease book's locks, keys in {} ms",
            leases.len(),
            started.elapsed().as_millis() - leases_ms
        );
        let mut keys = Vec::new();
        for export in exports {
            keys.extend(export.map_err(stopped)?);
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
    }

    /// Takes a snapshot's live state back in (at start, after the definitions and before any
    /// reserve). Expired entries and keys not defined now are dropped.
    pub async fn restore(&self, snapshot: MemorySnapshot) -> Result<RestoreSummary, BackendError> {
        let now_ms = self.clock.now_ms();
        let mut by_part: Vec<Vec<LeaseRecord>> = vec![Vec::new(); self.books.len()];
        for record in snapshot.leases {
            by_part[self.book_part(record.lease())].push(record);
        }
        let mut summary = RestoreSummary {
            leases: by_part
                .into_iter()
                .zip(self.books.iter())
                .map(|(records, book)| self.lock_book(book).table.import(records, now_ms))
                .sum(),
            ..RestoreSummary::default()
        };
        let mut per_shard: HashMap<usize, Vec<KeySnapshot>> = HashMap::new();
        for key in snapshot.keys {
            match self.entry(&key.key) {
                Some(entry) => per_shard.entry(entry.shard).or_default().push(key),
                None => summary.unknown_keys.push(key.key),
            }
        }
        let imports = per_shard
            .into_iter()
            .map(|(shard, keys)| self.shards[shard].addr.send(ImportKeys { keys, now_ms }));
        for imported in join_all(imports).await {
            let (keys, reservations) = imported.map_err(stopped)?;
            summary.keys += keys;
            summary.reservations += reservations;
        }
        self.changed();
        Ok(summary)
    }

    /// Counts every key's whole capacity in use until `since_ms` plus the key's longest hold:
    /// used when a snapshot exists but cannot be read. Answers how many keys are blocked.
    pub async fn block_all_until(&self, since_ms: i64) -> Result<usize, BackendError> {
        let now_ms = self.clock.now_ms();
        let mut per_shard: HashMap<usize, Vec<(KeyName, i64)>> = HashMap::new();
        for entry in self.directory().values() {
            let until_ms = since_ms.saturating_add(entry.hold_ms);
            if until_ms > now_ms {
                per_shard
                    .entry(entry.shard)
                    .or_default()
                    .push((entry.name.clone(), until_ms));
            }
        }
        let count = per_shard.values().map(Vec::len).sum();
        let blocks = per_shard
            .into_iter()
            .map(|(shard, keys)| self.shards[shard].addr.send(BlockKeys(keys)));
        for block in join_all(blocks).await {
            block.map_err(stopped)?;
        }
        self.changed();
        Ok(count)
    }
}
