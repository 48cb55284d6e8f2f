//! `cogni validate`: the config and every file it points at (questions files, the embedded
//! limits file), with every problem reported and named by file and field.

use std::path::PathBuf;

use thiserror::Error;

use super::config::{ConfigError, LimiterMode, LoadedConfig};
use super::questions::QuestionsFile;
use crate::limits_file::{read_limits_file, LimitsFileError};

/// A file the config points at that cannot be used; each names both files and the field.
#[derive(Debug, Error)]
pub enum FileProblem {
    /// A task's questions file is missing or invalid.
    #[error("{source} (tasks[{task}].questions_file in {config})")]
    Questions {
        /// Position of the task.
        task: usize,
        /// The config file.
        config: PathBuf,
        /// What is wrong, naming the questions file.
        source: ConfigError,
    },
    /// The embedded limiter's limits file is missing or invalid.
    #[error("{config}: rate_limiter.limits_path: {source}")]
    Limits {
        /// The config file.
        config: PathBuf,
        /// What is wrong, naming the limits file.
        source: LimitsFileError,
    },
}

/// What a successful validation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationSummary {
    /// Tasks in the config.
    pub tasks: usize,
    /// Questions over all tasks.
    pub questions: usize,
}

/// Checks the files a loaded config refers to; returns every problem.
pub fn validate_files(loaded: &LoadedConfig) -> Result<ValidationSummary, Vec<FileProblem>> {
    let mut problems = Vec::new();
    let mut questions = 0;
    for (i, task) in loaded.config.tasks.iter().enumerate() {
        let Some(file) = &task.questions_file else {
            continue;
        };
        let path = loaded.resolve(file);
        match QuestionsFile::load(&path) {
            Ok(q) => questions += q.questions.len(),
            Err(source) => problems.push(FileProblem::Questions {
                task: i,
                config: loaded.path.clone(),
                source,
            }),
        }
    }
    let rl = &loaded.config.rate_limiter;
    if rl.mode == LimiterMode::Embedded {
        if let Some(limits) = &rl.limits_path {
            let path = loaded.resolve(limits);
            if let Err(source) = read_limits_file(&path) {
                problems.push(FileProblem::Limits {
                    config: loaded.path.clone(),
                    source,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(ValidationSummary {
            tasks: loaded.config.tasks.len(),
            questions,
        })
    } else {
        Err(problems)
    }
}
