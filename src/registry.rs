//! The registry file (SPEC §2): a JSON array of [`LimitState`], loaded at start and rewritten
//! atomically on every admin change (write `<path>.tmp`, fsync, rename, fsync the directory),
//! so a crash leaves either the old or the new file, never a torn one. The format is the one
//! of limits files ([`crate::limits_file`]), which are only ever read.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::atomic_file::{self, SyncDir};
use crate::limits_file::{parse_limits_file, LimitsFileError};
use crate::model::LimitState;

/// Why a registry file could not be used.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The file exists but could not be read, or is not a valid limits file; it is left as
    /// it is.
    #[error(transparent)]
    File(#[from] LimitsFileError),
    /// Writing the new registry failed; the old file is untouched.
    #[error("cannot save registry {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The registry file of one `ratelimiterd`.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
    /// Serializes saves in this process: two writers must never share the `.tmp` file.
    save_lock: Arc<Mutex<()>>,
    /// The directory fsync after the rename (replaced in tests to inject failures).
    sync_dir: SyncDir,
}

impl Registry {
    /// A registry stored at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Registry {
            path: path.into(),
            save_lock: Arc::new(Mutex::new(())),
            sync_dir: atomic_file::sync_dir,
        }
    }

    /// Where the registry lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    fn tmp_path(&self) -> PathBuf {
        atomic_file::tmp_path(&self.path)
    }

    /// Loads the registry; a missing file is an empty registry, a corrupt one is an error
    /// (the file is left as it is, never replaced by an empty one).
    pub fn load(&self) -> Result<Vec<LimitState>, RegistryError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => Ok(parse_limits_file(&text, &self.path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(LimitsFileError::Read {
                path: self.path.clone(),
                source,
            }
            .into()),
        }
    }

    /// Saves `states` atomically. Blocking: call it off the actor threads.
    ///
    /// Once the rename has put the new file in place the change counts as saved: a failing
    /// fsync of the directory afterwards is logged as a warning (the rename may not survive a
    /// power loss) but not reported, since every reader already sees the new file and
    /// reporting failure would make the caller undo a change that is on disk.
    pub fn save(&self, states: &[LimitState]) -> Result<(), RegistryError> {
        let write_err = |source| RegistryError::Write {
            path: self.path.clone(),
            source,
        };
        let mut json =
            serde_json::to_vec_pretty(states).map_err(|e| write_err(std::io::Error::other(e)))?;
        json.push(b'\n');
        let _guard = self
            .save_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        atomic_file::replace(&self.path, &json, self.sync_dir, "registry").map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LimitDefinition, LimitStatus};

    fn state(key: &str, capacity: u64) -> LimitState {
        LimitState::active(LimitDefinition {
            unit: "tokens".into(),
            description: "d".into(),
            ..LimitDefinition::rolling(key, capacity, 60)
        })
    }

    #[test]
    fn round_trip_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path().join("sub/limits.json"));
        assert!(registry.load().unwrap().is_empty());
        let mut decreasing = state("b", 100);
        decreasing.status = LimitStatus::Decreasing;
        decreasing.pending_decrease_to = 40;
        let states = vec![state("a", 1), decreasing];
        registry.save(&states).unwrap();
        assert_eq!(registry.load().unwrap(), states);
        assert!(!registry.tmp_path().exists());
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failing_directory_sync_after_the_rename_still_counts_as_saved() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::new(dir.path().join("limits.json"));
        registry.save(&[state("old", 1)]).unwrap();
        registry.sync_dir = |_| Err(std::io::Error::other("injected fsync failure"));
        let new = vec![state("new", 2)];
        registry
            .save(&new)
            .expect("the renamed file is the saved state");
        assert_eq!(registry.load().unwrap(), new);
        assert!(!registry.tmp_path().exists());
    }

    #[test]
    fn a_failing_write_before_the_rename_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path().join("limits.json"));
        let old = vec![state("old", 1)];
        registry.save(&old).unwrap();
        // A directory in the way of the `.tmp` file makes the write fail.
        fs::create_dir(registry.tmp_path()).unwrap();
        let err = registry.save(&[state("new", 2)]).unwrap_err();
        assert!(matches!(err, RegistryError::Write { .. }), "{err}");
        assert_eq!(registry.load().unwrap(), old);
    }

    #[test]
    fn corrupt_file_is_rejected_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        fs::write(&path, "[{\"definition\": ").unwrap();
        let err = Registry::new(&path).load().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("limits.json"), "{message}");
        assert!(message.contains("expected a JSON array"), "{message}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "[{\"definition\": ");
    }

    #[test]
    fn unreadable_path_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Registry::new(dir.path()).load().unwrap_err();
        assert!(
            matches!(err, RegistryError::File(LimitsFileError::Read { .. })),
            "{err}"
        );
    }

    #[test]
    fn concurrent_saves_and_loads_never_see_a_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::new(dir.path().join("limits.json")));
        registry.save(&[state("a", 1)]).unwrap();
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let registry = Arc::clone(&registry);
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let states: Vec<_> = (0..=(w + i) % 5)
                            .map(|n| state(&format!("k{n}"), n + 1))
                            .collect();
                        registry.save(&states).expect("serialized saves succeed");
                    }
                })
            })
            .collect();
        let reader = {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || {
                for _ in 0..200 {
                    registry.load().expect("a reader always sees a whole file");
                }
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        registry.load().unwrap();
    }
}
