//! The memory backend's live state as saved at a graceful stop (and periodically) and loaded
//! at the next start: every key's live reservations and debt, and the lease table. Plain data;
//! the file lives in [`crate::snapshot`], the actors export and import it.

use serde::{Deserialize, Serialize};

use super::leases::LeaseRecord;
use super::LeaseId;

/// Version of the snapshot format; a file of another version is not used.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything the memory backend must not forget across a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySnapshot {
    /// Format version ([`SNAPSHOT_VERSION`]).
    pub version: u32,
    /// When it was taken (Unix ms); entries due before the next start are simply dropped.
    pub taken_at_ms: i64,
    /// Every key with something live.
    pub keys: Vec<KeySnapshot>,
    /// The remembered leases (allowed, completed, denied).
    pub leases: Vec<LeaseRecord>,
}

/// One key's live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySnapshot {
    /// The limit key.
    pub key: String,
    /// Overage recorded as debt.
    pub debt: u64,
    /// Live reservations (rolling) or holds (concurrency).
    pub reservations: Vec<ReservationRecord>,
}

/// One live reservation or hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRecord {
    /// The lease holding it.
    pub lease: LeaseId,
    /// Units held.
    pub amount: u64,
    /// When it expires (Unix ms).
    pub expires_at_ms: i64,
}

impl KeySnapshot {
    /// Whether there is nothing to restore.
    pub fn is_empty(&self) -> bool {
        self.debt == 0 && self.reservations.is_empty()
    }
}
