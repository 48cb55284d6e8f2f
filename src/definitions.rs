//! Limit definitions shared by every instance of a cluster.
//!
//! A backend whose capacity is shared by several `ratelimiterd` instances (TigerBeetle) also
//! keeps the definitions, so that a limit created or changed through any instance is in force
//! on all of them. Every change of a key is a new *version* (1, 2, ...) of its
//! [`LimitState`]; a version is written once and never changed, and writing a version that
//! already exists with other content is a [`StoreError::Conflict`]: the writer read a stale
//! state, re-reads and tries again. The store itself provides that compare-and-set (the
//! TigerBeetle cluster refuses a second account with the same id), so no instance needs to
//! coordinate with another.
//!
//! The service reads the whole store at start, follows its changes (see
//! [`DefinitionStore::changes_since`]), and writes every admin change there first.

use async_trait::async_trait;
use thiserror::Error;

use crate::backend::BackendError;
use crate::model::LimitState;

/// A key's state as the store holds it, with its version (1 for the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The version, counted per key from 1.
    pub version: u64,
    /// The state written as that version.
    pub state: LimitState,
}

/// How far a reader has followed the store's changes; `Cursor::default()` is the beginning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub u64);

/// Why a store call failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    /// Another instance wrote this version of the key first, with other content.
    #[error("version {version} of limit {key} was written by another instance first")]
    Conflict {
        /// The key.
        key: String,
        /// The version that exists already.
        version: u64,
    },
    /// The state does not fit in one store record.
    #[error("limit {key}: {reason}")]
    TooLarge {
        /// The key.
        key: String,
        /// What is too large, and the bound.
        reason: String,
    },
    /// A record in the store cannot be read back (written by an incompatible version?).
    #[error("limit record {record} in the shared registry is unreadable: {reason}")]
    Unreadable {
        /// Which record (key tag and version).
        record: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store could not be reached or refused the call.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Changes read by [`DefinitionStore::changes_since`].
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// The newest version of every key changed since the cursor.
    pub states: Vec<Versioned>,
    /// Records that could not be read (each is logged by the caller and skipped).
    pub unreadable: Vec<StoreError>,
    /// Where to continue from.
    pub cursor: Cursor,
}

/// A registry of limit states shared by every instance of a cluster.
#[async_trait]
pub trait DefinitionStore: Send + Sync + std::fmt::Debug {
    /// Where the definitions live, for logs (e.g. `the TigerBeetle cluster 0 at 3000`).
    fn describe(&self) -> String;

    /// The newest version of every key written after `cursor` (everything from
    /// `Cursor::default()`), and the cursor to continue from.
    async fn changes_since(&self, cursor: Cursor) -> Result<Changes, StoreError>;

    /// The newest version of one key, or `None` if the store has never seen it.
    async fn latest(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Writes `state` as `version` of its key (the newest known version + 1). Writing the
    /// same content again is a success; other content at an existing version is
    /// [`StoreError::Conflict`].
    async fn write(&self, version: u64, state: &LimitState) -> Result<(), StoreError>;
}
