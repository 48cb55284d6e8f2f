//! The memory backend's reservation snapshot file: live reservations, holds, debt and
//! remembered leases, saved beside the registry at a graceful stop (and periodically) and
//! loaded at the next start, so a restart never grants a window twice and a lease reserved
//! before it can still be completed after it.
//!
//! Saves are atomic (see [`crate::atomic_file`]). A file that cannot be used (unreadable,
//! malformed, another format version) is never trusted and never silently ignored: the start
//! counts every key as fully used for one hold after the file was written (see
//! [`crate::actors::SnapshotKeeper`]), which over-counts rather than grants twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use thiserror::Error;

use crate::atomic_file::{self, SyncDir};
use crate::model::{MemorySnapshot, SNAPSHOT_VERSION};

/// Why a snapshot could not be saved.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The backend did not answer.
    #[error("cannot take a snapshot of the memory backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    /// Writing the file failed; the previous file is untouched.
    #[error("cannot save reservation snapshot {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What was found where the snapshot lives.
#[derive(Debug)]
pub enum LoadedSnapshot {
    /// No file: a first start, or the memory backend never saved one.
    Missing,
    /// A valid snapshot.
    Usable(MemorySnapshot),
    /// A file that cannot be trusted.
    Unusable {
        /// What is wrong with it.
        reason: String,
        /// When it was last written (its modification time, Unix ms), or `None` if unknown.
        written_at_ms: Option<i64>,
    },
}

/// The snapshot file of one `ratelimiterd`.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    /// Serializes saves (they share the `.tmp` file) and remembers the newest generation
    /// saved, so a slow older save never overwrites a newer one.
    saved: Arc<Mutex<Option<u64>>>,
    sync_dir: SyncDir,
}

impl SnapshotFile {
    /// A snapshot stored at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SnapshotFile {
            path: path.into(),
            saved: Arc::new(Mutex::new(None)),
            sync_dir: atomic_file::sync_dir,
        }
    }

    /// The snapshot kept beside a registry file: `data/limits.json` →
    /// `data/limits.reservations.json`.
    pub fn beside_registry(registry: &Path) -> Self {
        let stem = registry
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "registry".into());
        SnapshotFile::new(registry.with_file_name(format!("{stem}.reservations.json")))
    }

    /// Where the snapshot lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the snapshot.
    pub fn load(&self) -> LoadedSnapshot {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LoadedSnapshot::Missing,
            Err(e) => return self.unusable(format!("cannot be read: {e}")),
        };
        match serde_json::from_str::<MemorySnapshot>(&text) {
            Ok(snapshot) if snapshot.version == SNAPSHOT_VERSION => {
                LoadedSnapshot::Usable(snapshot)
            }
            Ok(snapshot) => self.unusable(format!(
                "has format version {}, this build reads version {SNAPSHOT_VERSION}",
                snapshot.version
            )),
            Err(e) => self.unusable(format!("is not a valid snapshot: {e}")),
        }
    }

    fn unusable(&self, reason: String) -> LoadedSnapshot {
        let written_at_ms = fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok());
        LoadedSnapshot::Unusable {
            reason,
            written_at_ms,
        }
    }

    /// Saves `snapshot` of state `generation` atomically, unless a newer generation was saved
    /// already (answers `false` then). Blocking: call it off the actor threads.
    pub fn save(&self, generation: u64, snapshot: &MemorySnapshot) -> Result<bool, SnapshotError> {
        let write_err = |source| SnapshotError::Write {
            path: self.path.clone(),
            source,
        };
        let mut saved = self
            .saved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if saved.is_some_and(|newest| newest > generation) {
            return Ok(false);
        }
        // Streamed: a snapshot of a million leases is hundreds of megabytes of JSON.
        let json = |out: &mut dyn std::io::Write| {
            serde_json::to_writer(out, snapshot).map_err(std::io::Error::other)
        };
        atomic_file::replace_with(&self.path, json, self.sync_dir, "reservation snapshot")
            .map_err(write_err)?;
        *saved = Some(generation);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeySnapshot, LeaseId, LeaseRecord, ReservationRecord};

    fn snapshot() -> MemorySnapshot {
        let lease = LeaseId::new();
        MemorySnapshot {
            version: SNAPSHOT_VERSION,
            taken_at_ms: 1_000,
            keys: vec![KeySnapshot {
                key: "a".into(),
                debt: 3,
                reservations: vec![ReservationRecord {
                    lease,
                    amount: 2,
                    expires_at_ms: 61_000,
                }],
            }],
            leases: vec![LeaseRecord::Denied {
                lease: LeaseId::new(),
                retry_after_ms: 5,
                forget_at_ms: 61_000,
            }],
        }
    }

    #[test]
    fn beside_the_registry() {
        let file = SnapshotFile::beside_registry(Path::new("data/limits.json"));
        assert_eq!(file.path(), Path::new("data/limits.reservations.json"));
    }

    #[test]
    fn round_trip_and_an_older_generation_never_overwrites_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("sub/s.json"));
        assert!(matches!(file.load(), LoadedSnapshot::Missing));
        let newer = snapshot();
        assert!(file.save(7, &newer).unwrap());
        assert!(
            !file.save(6, &snapshot()).unwrap(),
            "older generation skipped"
        );
        match file.load() {
            LoadedSnapshot::Usable(loaded) => assert_eq!(loaded, newer),
            other => panic!("expected a usable snapshot, got {other:?}"),
        }
        assert!(!atomic_file::tmp_path(file.path()).exists());
    }

    #[test]
    fn corrupt_or_foreign_files_are_unusable_with_their_write_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("s.json"));
        fs::write(file.path(), "{ not json").unwrap();
        match file.load() {
            LoadedSnapshot::Unusable {
                reason,
                written_at_ms,
            } => {
                assert!(reason.contains("not a valid snapshot"), "{reason}");
                assert!(written_at_ms.is_some_and(|t| t > 0));
            }
            other => panic!("expected unusable, got {other:?}"),
        }
        let mut other_version = serde_json::to_value(snapshot()).unwrap();
        other_version["version"] = 99.into();
        fs::write(file.path(), other_version.to_string()).unwrap();
        match file.load() {
            LoadedSnapshot::Unusable { reason, .. } => {
                assert!(reason.contains("format version 99"), "{reason}")
            }
            other => panic!("expected unusable, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_save_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("s.json"));
        file.save(1, &snapshot()).unwrap();
        fs::create_dir(atomic_file::tmp_path(file.path())).unwrap();
        let err = file.save(2, &snapshot()).unwrap_err();
        assert!(err.to_string().contains("s.json"), "{err}");
        assert!(matches!(file.load(), LoadedSnapshot::Usable(_)));
    }
}
