//! The limits file format (SPEC §2): a JSON array of [`LimitState`], or, in a hand-written
//! file, bare [`LimitDefinition`]s. The one parser and validator of limit states, shared by
//! the server's registry, the client library's embedded limiter and Cogni.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::model::{InvalidRequest, LimitDefinition, LimitState};

/// Why a text is not a valid list of limit states; each variant names the entry at fault.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum InvalidLimits {
    /// The text is not a JSON array.
    #[error("expected a JSON array of limit states ({reason})")]
    NotAnArray {
        /// The JSON parser's message, with line and column.
        reason: String,
    },
    /// An entry that looks like a limit state has a field of the wrong shape.
    #[error("entry {index}: {reason}")]
    Malformed {
        /// Position of the entry.
        index: usize,
        /// The JSON parser's message, naming the field.
        reason: String,
    },
    /// An entry that is neither a limit state nor a limit definition.
    #[error("entry {index}: neither a limit state nor a limit definition")]
    Unrecognized {
        /// Position of the entry.
        index: usize,
    },
    /// An entry breaks a rule of SPEC §2.
    #[error("entry {index}: {source}")]
    Invalid {
        /// Position of the entry.
        index: usize,
        /// The rule broken, naming the field.
        source: InvalidRequest,
    },
    /// A key listed twice.
    #[error("entry {index}: key {key:?} is defined twice")]
    Duplicate {
        /// Position of the second entry.
        index: usize,
        /// The key.
        key: String,
    },
}

/// Why a limits file could not be used; every variant names the file.
#[derive(Debug, Error)]
pub enum LimitsFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid limits file.
    #[error("{path} is not a valid limits file: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        source: InvalidLimits,
    },
}

/// An entry of a limits file: a full state, or (for hand-written files) a bare definition.
#[derive(Deserialize)]
#[serde(untagged)]
enum FileEntry {
    State(LimitState),
    Definition(LimitDefinition),
}

/// Parses and validates limit states: every entry valid, every key once.
pub fn parse_limit_states(text: &str) -> Result<Vec<LimitState>, InvalidLimits> {
    // Parse as raw values first so an error names the entry and its own serde message.
    let values: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| InvalidLimits::NotAnArray {
            reason: e.to_string(),
        })?;
    let mut states = Vec::with_capacity(values.len());
    let mut keys = HashSet::new();
    for (index, value) in values.into_iter().enumerate() {
        let state = if value.get("definition").is_some() {
            serde_json::from_value::<LimitState>(value).map_err(|e| InvalidLimits::Malformed {
                index,
                reason: e.to_string(),
            })?
        } else {
            match serde_json::from_value::<FileEntry>(value) {
                Ok(FileEntry::State(s)) => s,
                Ok(FileEntry::Definition(d)) => LimitState::active(d),
                Err(_) => return Err(InvalidLimits::Unrecognized { index }),
            }
        };
        check_entry(index, &state, &mut keys)?;
        states.push(state);
    }
    Ok(states)
}

/// Checks limit states given as values (inline limits): every state valid, every key once.
pub fn validate_limit_states(states: &[LimitState]) -> Result<(), InvalidLimits> {
    let mut keys = HashSet::new();
    for (index, state) in states.iter().enumerate() {
        check_entry(index, state, &mut keys)?;
    }
    Ok(())
}

/// One entry: valid by SPEC §2, and a key not in `keys` (then added).
fn check_entry(
    index: usize,
    state: &LimitState,
    keys: &mut HashSet<String>,
) -> Result<(), InvalidLimits> {
    state
        .validate()
        .map_err(|source| InvalidLimits::Invalid { index, source })?;
    if !keys.insert(state.definition.key.clone()) {
        return Err(InvalidLimits::Duplicate {
            index,
            key: state.definition.key.clone(),
        });
    }
    Ok(())
}

/// Parses the text of the limits file at `path` (named in the error).
pub fn parse_limits_file(text: &str, path: &Path) -> Result<Vec<LimitState>, LimitsFileError> {
    parse_limit_states(text).map_err(|source| LimitsFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a limits file (never written).
pub fn read_limits_file(path: &Path) -> Result<Vec<LimitState>, LimitsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| LimitsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_limits_file(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LimitStatus;

    #[test]
    fn invalid_entries_name_the_entry() {
        let bad_capacity =
            r#"[{"definition":{"key":"k","kind":"rolling","capacity":0,"window_seconds":1}}]"#;
        let err = parse_limit_states(bad_capacity).unwrap_err();
        assert!(
            matches!(err, InvalidLimits::Invalid { index: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("entry 0: capacity"), "{err}");
        let dup = r#"[{"key":"k","kind":"rolling","capacity":1,"window_seconds":1},
                     {"key":"k","kind":"rolling","capacity":1,"window_seconds":1}]"#;
        let err = parse_limit_states(dup).unwrap_err();
        assert_eq!(
            err,
            InvalidLimits::Duplicate {
                index: 1,
                key: "k".into()
            }
        );
        assert!(err.to_string().contains("defined twice"), "{err}");
        let junk = r#"[{"nothing":1}]"#;
        assert_eq!(
            parse_limit_states(junk).unwrap_err(),
            InvalidLimits::Unrecognized { index: 0 }
        );
    }

    #[test]
    fn bare_definitions_are_accepted_in_limits_files() {
        let text = r#"[{"key":"k","kind":"concurrency","capacity":2,"timeout_seconds":30}]"#;
        let states = parse_limit_states(text).unwrap();
        assert_eq!(states[0].status, LimitStatus::Active);
        assert_eq!(states[0].definition.capacity, 2);
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.json");
        let err = read_limits_file(&path).unwrap_err();
        assert!(matches!(err, LimitsFileError::Read { .. }), "{err}");
        std::fs::write(&path, "{").unwrap();
        let err = read_limits_file(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("limits.json is not a valid limits file"),
            "{message}"
        );
        assert!(message.contains("expected a JSON array"), "{message}");
    }
}
