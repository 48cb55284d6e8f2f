//! The agent's read-only repository tools: list a directory, read a file (bounded), search
//! text. Every path is resolved inside the repository root: absolute paths, `..` components
//! and symlinks that lead outside are refused, so the agent can never read anything else.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use thiserror::Error;

/// Bounds on what one tool call may return or touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLimits {
    /// Most bytes `read_file` returns; longer files are truncated with a note.
    pub max_read_bytes: usize,
    /// Most entries `list_dir` returns.
    pub max_list_entries: usize,
    /// Most matching lines `search_text` returns.
    pub max_search_matches: usize,
    /// Most files `search_text` opens.
    pub max_search_files: usize,
    /// Files larger than this are skipped by `search_text`.
    pub max_search_file_bytes: u64,
}

impl Default for ToolLimits {
    fn default() -> Self {
        ToolLimits {
            max_read_bytes: 64 * 1024,
            max_list_entries: 500,
            max_search_matches: 100,
            max_search_files: 5_000,
            max_search_file_bytes: 1024 * 1024,
        }
    }
}

/// Why a tool call failed; the message goes back to the model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ToolError {
    /// The path would leave the repository root.
    #[error("refused: {0}")]
    Refused(String),
    /// The path does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The arguments are not what the tool takes.
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// What is wrong.
        message: String,
    },
    /// No tool has this name.
    #[error("unknown tool {0:?} (available: list_dir, read_file, search_text)")]
    UnknownTool(String),
    /// Reading failed.
    #[error("i/o error on {path}: {message}")]
    Io {
        /// The path as the model gave it.
        path: String,
        /// The error.
        message: String,
    },
}

/// The tools, bound to one repository root.
#[derive(Debug, Clone)]
pub struct RepoTools {
    root: PathBuf,
    limits: ToolLimits,
}

#[derive(Deserialize)]
struct PathArgs {
    #[serde(default)]
    path: Option<String>,
}

#[derive(Deserialize)]
struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
}

impl RepoTools {
    /// Tools over `root` (which must exist; it is canonicalized so symlink checks are exact).
    pub fn new(root: &Path, limits: ToolLimits) -> std::io::Result<RepoTools> {
        Ok(RepoTools {
            root: root.canonicalize()?,
            limits,
        })
    }

    /// The canonical repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OpenAI `tools` array describing the three tools.
    pub fn definitions() -> serde_json::Value {
        let path = json!({"type": "string", "description": "path relative to the repository root"});
        json!([
            {"type": "function", "function": {
                "name": "list_dir",
                "description": "List the entries of a directory of the repository (directories end with /).",
                "parameters": {"type": "object", "properties": {"path": path}, "required": []}}},
            {"type": "function", "function": {
                "name": "read_file",
                "description": "Read a text file of the repository (long files are truncated).",
                "parameters": {"type": "object", "properties": {"path": path}, "required": ["path"]}}},
            {"type": "function", "function": {
                "name": "search_text",
                "description": "Search the repository (or a sub-directory) for lines containing a literal string.",
                "parameters": {"type": "object", "properties": {
                    "pattern": {"type": "string", "description": "literal text to find"},
                    "path": path,
                    "case_insensitive": {"type": "boolean"}}, "required": ["pattern"]}}}
        ])
    }

    /// Runs the tool `name` with JSON `arguments` (as the model sent them).
    pub fn call(&self, name: &str, arguments: &str) -> Result<String, ToolError> {
        let args = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        let invalid = |e: serde_json::Error| ToolError::InvalidArguments {
            tool: name.to_string(),
            message: e.to_string(),
        };
        match name {
            "list_dir" => {
                let a: PathArgs = serde_json::from_str(args).map_err(invalid)?;
                self.list_dir(a.path.as_deref().unwrap_or("."))
            }
            "read_file" => {
                let a: PathArgs = serde_json::from_str(args).map_err(invalid)?;
                let path = a.path.ok_or_else(|| ToolError::InvalidArguments {
                    tool: name.to_string(),
                    message: "missing field `path`".into(),
                })?;
                self.read_file(&path)
            }
            "search_text" => {
                let a: SearchArgs = serde_json::from_str(args).map_err(invalid)?;
                self.search_text(
                    &a.pattern,
                    a.path.as_deref().unwrap_or("."),
                    a.case_insensitive,
                )
            }
            other => Err(ToolError::UnknownTool(other.to_string())),
        }
    }

    /// Resolves a model-supplied path to a canonical path inside the root, or refuses it.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ToolError> {
        let relative = Path::new(path.trim());
        if relative.is_absolute() || relative.has_root() {
            return Err(ToolError::Refused(format!(
                "{path:?} is absolute; give a path relative to the repository root"
            )));
        }
        if relative
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
        {
            return Err(ToolError::Refused(format!(
                "{path:?} contains `..`; paths may not leave the repository root"
            )));
        }
        let canonical = self.root.join(relative).canonicalize().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ToolError::NotFound(path.to_string())
            } else {
                ToolError::Io {
                    path: path.to_string(),
                    message: e.to_string(),
                }
            }
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(ToolError::Refused(format!(
                "{path:?} resolves outside the repository root (symlink)"
            )));
        }
        Ok(canonical)
    }

    fn display(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let text = rel.to_string_lossy().replace('\\', "/");
        if text.is_empty() {
            ".".into()
        } else {
            text
        }
    }

    /// Lists a directory: sorted names, directories with a trailing `/`, bounded.
    pub fn list_dir(&self, path: &str) -> Result<String, ToolError> {
        let dir = self.resolve(path)?;
        let io = |e: std::io::Error| ToolError::Io {
            path: path.to_string(),
            message: e.to_string(),
        };
        if !dir.is_dir() {
            return Err(ToolError::InvalidArguments {
                tool: "list_dir".into(),
                message: format!("{path:?} is not a directory"),
            });
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.path().is_dir();
            names.push(if is_dir { format!("{name}/") } else { name });
        }
        names.sort();
        let total = names.len();
        names.truncate(self.limits.max_list_entries);
        let mut out = names.join("\n");
        if total > names.len() {
            out.push_str(&format!(
                "\n[truncated: showing {} of {total} entries]",
                names.len()
            ));
        }
        if total == 0 {
            out = "(empty directory)".into();
        }
        Ok(out)
    }

    /// Reads a file, truncated to `max_read_bytes` with a note saying so.
    pub fn read_file(&self, path: &str) -> Result<String, ToolError> {
        let file_path = self.resolve(path)?;
        let io = |e: std::io::Error| ToolError::Io {
            path: path.to_string(),
            message: e.to_string(),
        };
        if file_path.is_dir() {
            return Err(ToolError::InvalidArguments {
                tool: "read_file".into(),
                message: format!("{path:?} is a directory; use list_dir"),
            });
        }
        let file = fs::File::open(&file_path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let cap = self.limits.max_read_bytes;
        let mut bytes = Vec::with_capacity(cap.min(usize::try_from(size).unwrap_or(cap)));
        file.take(cap as u64).read_to_end(&mut bytes).map_err(io)?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if size > bytes.len() as u64 {
            text.push_str(&format!(
                "\n[truncated: showing the first {} of {size} bytes]",
                bytes.len()
            ));
        }
        Ok(text)
    }

    /// Finds lines containing `pattern` under `path`: `file:line: text`, bounded.
    pub fn search_text(
        &self,
        pattern: &str,
        path: &str,
        case_insensitive: bool,
    ) -> Result<String, ToolError> {
        if pattern.is_empty() {
            return Err(ToolError::InvalidArguments {
                tool: "search_text".into(),
                message: "pattern must not be empty".into(),
            });
        }
        let start = self.resolve(path)?;
        let needle = if case_insensitive {
            pattern.to_lowercase()
        } else {
            pattern.to_string()
        };
        let mut matches = Vec::new();
        let mut truncated = false;
        let mut files_seen = 0usize;
        let mut stack = vec![start];
        while let Some(current) = stack.pop() {
            if matches.len() >= self.limits.max_search_matches
                || files_seen >= self.limits.max_search_files
            {
                truncated = true;
                break;
            }
            if current.is_dir() {
                let mut children: Vec<PathBuf> = match fs::read_dir(&current) {
                    Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
                    Err(_) => continue,
                };
                children.sort();
                for child in children.into_iter().rev() {
                    if let Some(inside) = self.walk_target(&child) {
                        stack.push(inside);
                    }
                }
                continue;
            }
            files_seen += 1;
            truncated |= self.search_file(&current, &needle, case_insensitive, &mut matches);
        }
        if matches.is_empty() {
            return Ok(format!("no matches for {pattern:?}"));
        }
        let mut out = matches.join("\n");
        if truncated {
            out.push_str("\n[truncated: search stopped at the match or file limit]");
        }
        Ok(out)
    }

    /// Where the walk may go from `child`: skips `.git`, directory symlinks (no loops) and
    /// anything resolving outside the root.
    fn walk_target(&self, child: &Path) -> Option<PathBuf> {
        if child.file_name().is_some_and(|n| n == ".git") {
            return None;
        }
        let meta = fs::symlink_metadata(child).ok()?;
        if meta.file_type().is_symlink() {
            let target = child.canonicalize().ok()?;
            if !target.starts_with(&self.root) || target.is_dir() {
                return None;
            }
            return Some(target);
        }
        Some(child.to_path_buf())
    }

    /// Appends matching lines of one file; returns whether the match limit was hit.
    fn search_file(
        &self,
        file: &Path,
        needle: &str,
        case_insensitive: bool,
        matches: &mut Vec<String>,
    ) -> bool {
        let too_big = fs::metadata(file).map(|m| m.len() > self.limits.max_search_file_bytes);
        if too_big.unwrap_or(true) {
            return false;
        }
        let Ok(bytes) = fs::read(file) else {
            return false;
        };
        if bytes.iter().take(8192).any(|b| *b == 0) {
            return false;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (number, line) in text.lines().enumerate() {
            let hit = if case_insensitive {
                line.to_lowercase().contains(needle)
            } else {
                line.contains(needle)
            };
            if hit {
                if matches.len() >= self.limits.max_search_matches {
                    return true;
                }
                let shown: String = line.trim().chars().take(200).collect();
                matches.push(format!("{}:{}: {shown}", self.display(file), number + 1));
            }
        }
        false
    }
}
