//! The registry file (SPEC §2): a JSON array of [`LimitState`], loaded at start and rewritten
//! atomically on every admin change (write `<path>.tmp`, fsync, rename, fsync the directory),
//! so a crash leaves either the old or the new file, never a torn one. Limits files share the
//! format and are only ever read.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use thiserror::Error;

use crate::model::{LimitDefinition, LimitState};

/// Why a registry or limits file could not be used.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a JSON array of limit states.
    #[error("{path} is not a valid limits file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column where known.
        message: String,
    },
    /// Writing the new registry failed; the old file is untouched.
    #[error("cannot save registry {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// An entry of a limits file: a full state, or (for hand-written files) a bare definition.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileEntry {
    State(LimitState),
    Definition(LimitDefinition),
}

/// Parses and validates the text of a registry or limits file; `origin` names it in errors.
pub fn parse_states(text: &str, origin: &Path) -> Result<Vec<LimitState>, RegistryError> {
    let corrupt = |message: String| RegistryError::Corrupt {
        path: origin.to_path_buf(),
        message,
    };
    // Parse as raw values first so an error names the entry and its own serde message.
    let values: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| corrupt(format!("expected a JSON array of limit states ({e})")))?;
    let mut states = Vec::with_capacity(values.len());
    let mut keys = HashSet::new();
    for (index, value) in values.into_iter().enumerate() {
        let state = if value.get("definition").is_some() {
            serde_json::from_value::<LimitState>(value)
                .map_err(|e| corrupt(format!("entry {index}: {e}")))?
        } else {
            match serde_json::from_value::<FileEntry>(value) {
                Ok(FileEntry::State(s)) => s,
                Ok(FileEntry::Definition(d)) => LimitState::active(d),
                Err(_) => {
                    return Err(corrupt(format!(
                        "entry {index}: neither a limit state nor a limit definition"
                    )))
                }
            }
        };
        state
            .validate()
            .map_err(|e| corrupt(format!("entry {index}: {e}")))?;
        if !keys.insert(state.definition.key.clone()) {
            return Err(corrupt(format!(
                "entry {index}: key {:?} is defined twice",
                state.definition.key
            )));
        }
        states.push(state);
    }
    Ok(states)
}

/// Reads a limits file (never written).
pub fn read_limits_file(path: &Path) -> Result<Vec<LimitState>, RegistryError> {
    let text = fs::read_to_string(path).map_err(|source| RegistryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_states(&text, path)
}

/// The registry file of one `ratelimiterd`.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
    /// Serializes saves in this process: two writers must never share the `.tmp` file.
    save_lock: Arc<Mutex<()>>,
}

impl Registry {
    /// A registry stored at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Registry {
            path: path.into(),
            save_lock: Arc::new(Mutex::new(())),
        }
    }

    /// Where the registry lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tmp_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".tmp");
        PathBuf::from(name)
    }

    /// Loads the registry; a missing file is an empty registry, a corrupt one is an error
    /// (the file is left as it is, never replaced by an empty one).
    pub fn load(&self) -> Result<Vec<LimitState>, RegistryError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => parse_states(&text, &self.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(RegistryError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Saves `states` atomically. Blocking: call it off the actor threads.
    pub fn save(&self, states: &[LimitState]) -> Result<(), RegistryError> {
        let write_err = |source| RegistryError::Write {
            path: self.path.clone(),
            source,
        };
        let json =
            serde_json::to_vec_pretty(states).map_err(|e| write_err(std::io::Error::other(e)))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(write_err)?;
        let _guard = self
            .save_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tmp = self.tmp_path();
        let result = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable.
            fs::File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LimitStatus;

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
    fn invalid_entries_name_the_entry() {
        let origin = Path::new("x.json");
        let bad_capacity =
            r#"[{"definition":{"key":"k","kind":"rolling","capacity":0,"window_seconds":1}}]"#;
        let msg = parse_states(bad_capacity, origin).unwrap_err().to_string();
        assert!(msg.contains("entry 0: capacity"), "{msg}");
        let dup = r#"[{"key":"k","kind":"rolling","capacity":1,"window_seconds":1},
                     {"key":"k","kind":"rolling","capacity":1,"window_seconds":1}]"#;
        let msg = parse_states(dup, origin).unwrap_err().to_string();
        assert!(msg.contains("defined twice"), "{msg}");
        let junk = r#"[{"nothing":1}]"#;
        let msg = parse_states(junk, origin).unwrap_err().to_string();
        assert!(msg.contains("entry 0"), "{msg}");
    }

    #[test]
    fn bare_definitions_are_accepted_in_limits_files() {
        let text = r#"[{"key":"k","kind":"concurrency","capacity":2,"timeout_seconds":30}]"#;
        let states = parse_states(text, Path::new("x")).unwrap();
        assert_eq!(states[0].status, LimitStatus::Active);
        assert_eq!(states[0].definition.capacity, 2);
    }

    #[test]
    fn unreadable_path_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Registry::new(dir.path()).load().unwrap_err();
        assert!(matches!(err, RegistryError::Read { .. }), "{err}");
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
