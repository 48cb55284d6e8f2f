//! Run results: `results.json` (SPEC §7 fields plus run id, config path, limiter mode and
//! start/end time; questions in question order) and the console summary table.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::eval::{QuestionResult, TaskStatus, Verdict, VerdictCounts};
use super::output::{Output, Style};
use super::provider::TokenUsage;

/// Name of the results file inside the output directory.
pub const RESULTS_FILE: &str = "results.json";

/// One `cogni run` / `cogni eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// ULID of the run.
    pub run_id: String,
    /// The config file used.
    pub config_path: String,
    /// The repository root the tools were bound to.
    pub repo_root: String,
    /// disabled | remote | embedded.
    pub limiter_mode: String,
    /// RFC 3339 UTC start time.
    pub started_at: String,
    /// RFC 3339 UTC end time.
    pub finished_at: String,
    /// Wall time of the whole run.
    pub wall_time_ms: u64,
    /// The tasks, in the order they ran.
    pub tasks: Vec<TaskReport>,
}

/// One task's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Task id.
    pub id: String,
    /// Task type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Agent id.
    pub agent: String,
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// The questions file.
    pub questions_file: String,
    /// Worker actors used.
    pub workers: usize,
    /// pass | fail | error.
    pub status: TaskStatus,
    /// correct / total.
    pub accuracy: f64,
    /// Counts per verdict.
    pub counts: VerdictCounts,
    /// Tokens over all questions.
    pub tokens: TokenUsage,
    /// Provider requests over all questions (retries included).
    pub provider_requests: u64,
    /// Wall time of the task.
    pub wall_time_ms: u64,
    /// Per-question results, in question order.
    pub questions: Vec<QuestionResult>,
}

impl RunReport {
    /// Whether every task completed without a runtime error.
    pub fn has_error(&self) -> bool {
        self.tasks.iter().any(|t| t.status == TaskStatus::Error)
    }

    /// Writes `results.json` into `dir` (created if missing) atomically; returns its path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(RESULTS_FILE);
        let tmp = dir.join(format!("{RESULTS_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json + "\n")?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// Prints the summary table: one row per task, then the questions that were not correct.
pub fn print_summary(report: &RunReport, output: &Output) {
    let header = format!(
        "{:<16} {:<6} {:>8} {:>7} {:>9} {:>6} {:>7} {:>6} {:>9} {:>8} {:>9}",
        "task",
        "status",
        "accuracy",
        "correct",
        "incorrect",
        "parse",
        "runtime",
        "budget",
        "requests",
        "tokens",
        "wall"
    );
    output.line(&output.paint(Style::Bold, &header));
    for task in &report.tasks {
        let c = &task.counts;
        let status = format!("{:<6}", task.status.as_str());
        let style = match task.status {
            TaskStatus::Pass => Style::Green,
            TaskStatus::Fail => Style::Yellow,
            TaskStatus::Error => Style::Red,
        };
        output.line(&format!(
            "{:<16} {} {:>7.1}% {:>7} {:>9} {:>6} {:>7} {:>6} {:>9} {:>8} {:>8.2}s",
            task.id,
            output.paint(style, &status),
            task.accuracy * 100.0,
            format!("{}/{}", c.correct, c.total),
            c.incorrect,
            c.parse_error,
            c.runtime_error,
            c.budget_exceeded,
            task.provider_requests,
            task.tokens.total(),
            task.wall_time_ms as f64 / 1000.0
        ));
    }
    for task in &report.tasks {
        for q in task
            .questions
            .iter()
            .filter(|q| q.verdict != Verdict::Correct)
        {
            let answer = q.parsed_answer.as_deref().unwrap_or("-");
            let detail = q
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            output.line(&output.paint(
                Style::Dim,
                &format!(
                    "  {}/{}: {} answer {answer:?}{detail}",
                    task.id,
                    q.id,
                    q.verdict.as_str()
                ),
            ));
        }
    }
}
