//! `cogni validate`: the config and every file it points at (questions files, the embedded
//! limits file), with every problem reported and named by file and field.

use super::config::{LimiterMode, LoadedConfig};
use super::questions::QuestionsFile;
use crate::registry::read_limits_file;

/// What a successful validation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationSummary {
    /// Tasks in the config.
    pub tasks: usize,
    /// Questions over all tasks.
    pub questions: usize,
}

/// Checks the files a loaded config refers to; returns one message per problem.
pub fn validate_files(loaded: &LoadedConfig) -> Result<ValidationSummary, Vec<String>> {
    let mut problems = Vec::new();
    let mut questions = 0;
    for (i, task) in loaded.config.tasks.iter().enumerate() {
        let Some(file) = &task.questions_file else {
            continue;
        };
        let path = loaded.resolve(file);
        match QuestionsFile::load(&path) {
            Ok(q) => questions += q.questions.len(),
            Err(e) => problems.push(format!(
                "{} (tasks[{i}].questions_file in {})",
                e,
                loaded.path.display()
            )),
        }
    }
    let rl = &loaded.config.rate_limiter;
    if rl.mode == LimiterMode::Embedded {
        if let Some(limits) = &rl.limits_path {
            let path = loaded.resolve(limits);
            if let Err(e) = read_limits_file(&path) {
                problems.push(format!(
                    "{}: rate_limiter.limits_path: {e}",
                    loaded.path.display()
                ));
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
