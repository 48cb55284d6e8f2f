//! Question files (SPEC §7): `{ version: 1, questions: [ { id?, question, answers,
//! correct_answers } ] }` in YAML or JSON, validated with errors that name the file and field.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::{ConfigError, Issue};

/// A parsed questions file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionsFile {
    /// Format version; must be 1.
    #[serde(default = "one")]
    pub version: u32,
    /// The questions, in the order results are reported.
    pub questions: Vec<Question>,
}

fn one() -> u32 {
    1
}

/// One multiple-choice question about the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// Optional stable id; unique within the file when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The question text.
    pub question: String,
    /// The choices shown to the agent.
    pub answers: Vec<String>,
    /// The choices that count as correct; a subset of `answers`.
    pub correct_answers: Vec<String>,
}

impl Question {
    /// The id to show for the question at `index`: its own id, else `q<index+1>`.
    pub fn display_id(&self, index: usize) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!("q{}", index + 1),
        }
    }

    /// Whether `answer` matches one of the correct answers (case-insensitive, trimmed).
    pub fn is_correct(&self, answer: &str) -> bool {
        let answer = normalize(answer);
        self.correct_answers.iter().any(|c| normalize(c) == answer)
    }
}

/// How answers are compared: trimmed and lower-cased.
pub fn normalize(text: &str) -> String {
    text.trim().to_lowercase()
}

impl QuestionsFile {
    /// Reads, parses (JSON for `.json`, YAML otherwise) and validates a questions file.
    pub fn load(path: &Path) -> Result<QuestionsFile, ConfigError> {
        let text = super::config::read_text(path)?;
        Self::from_text(&text, path)
    }

    /// Parses and validates text that came from `path`.
    pub fn from_text(text: &str, path: &Path) -> Result<QuestionsFile, ConfigError> {
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let parsed: Result<QuestionsFile, String> = if is_json {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())
        };
        let file = parsed.map_err(|message| ConfigError::Parse {
            path: PathBuf::from(path),
            message,
        })?;
        let issues = file.validate();
        if issues.is_empty() {
            Ok(file)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                issues,
            })
        }
    }

    /// Every rule of SPEC §7; an empty list means the file is valid.
    pub fn validate(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        issues.extend(Issue::unsupported_version(self.version));
        if self.questions.is_empty() {
            issues.push(Issue::new("questions", "must not be empty"));
        }
        let mut ids = HashSet::new();
        for (i, q) in self.questions.iter().enumerate() {
            let field = |name: &str| format!("questions[{i}].{name}");
            if let Some(id) = &q.id {
                if id.trim().is_empty() {
                    issues.push(Issue::new(field("id"), "must not be empty when present"));
                } else if !ids.insert(id.as_str()) {
                    issues.push(Issue::new(
                        field("id"),
                        format!("duplicate question id {id:?}"),
                    ));
                }
            }
            if q.question.trim().is_empty() {
                issues.push(Issue::new(field("question"), "must not be empty"));
            }
            check_strings(&field("answers"), &q.answers, &mut issues);
            check_strings(&field("correct_answers"), &q.correct_answers, &mut issues);
            let choices: HashSet<String> = q.answers.iter().map(|a| normalize(a)).collect();
            for (j, correct) in q.correct_answers.iter().enumerate() {
                if !correct.trim().is_empty() && !choices.contains(&normalize(correct)) {
                    issues.push(Issue::new(
                        format!("questions[{i}].correct_answers[{j}]"),
                        format!("{correct:?} is not one of the answers"),
                    ));
                }
            }
        }
        issues
    }
}

/// A non-empty list of non-empty strings.
fn check_strings(field: &str, values: &[String], issues: &mut Vec<Issue>) {
    if values.is_empty() {
        issues.push(Issue::new(field, "must not be empty"));
    }
    for (j, value) in values.iter().enumerate() {
        if value.trim().is_empty() {
            issues.push(Issue::new(format!("{field}[{j}]"), "must not be empty"));
        }
    }
}
