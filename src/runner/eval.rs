//! Per-question verdicts and results, and the task status rule (SPEC §7).

use serde::{Deserialize, Serialize};

use super::provider::TokenUsage;

/// How one question ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The parsed answer is one of the correct answers.
    Correct,
    /// The parsed answer is not a correct answer.
    Incorrect,
    /// The final reply had no single `<answer>…</answer>`.
    ParseError,
    /// The provider or the limiter failed.
    RuntimeError,
    /// `max_steps`, `budget.max_tokens` or `budget.max_seconds` ran out.
    BudgetExceeded,
}

impl Verdict {
    /// The snake_case name used in results and the console.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::Incorrect => "incorrect",
            Verdict::ParseError => "parse_error",
            Verdict::RuntimeError => "runtime_error",
            Verdict::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// One tool call the agent made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The step (provider request number) that asked for it.
    pub step: u32,
    /// Tool name.
    pub name: String,
    /// JSON arguments as sent by the model.
    pub arguments: String,
    /// Whether the tool succeeded (a refused path is `false`).
    pub ok: bool,
}

/// Everything recorded about one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionResult {
    /// Position in the questions file.
    pub index: usize,
    /// The question id, or `q<index+1>`.
    pub id: String,
    /// The question text.
    pub question: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The answer read from the reply, when there was one.
    pub parsed_answer: Option<String>,
    /// The accepted answers.
    pub correct_answers: Vec<String>,
    /// What went wrong, for every verdict but correct/incorrect.
    pub error: Option<String>,
    /// Tokens the provider reported over all steps.
    pub tokens: TokenUsage,
    /// Wall time of the question, limiter waits included.
    pub wall_time_ms: u64,
    /// Agent steps taken (one provider response each).
    pub steps: u32,
    /// HTTP requests sent to the provider (steps plus retries).
    pub provider_requests: u32,
    /// The tool calls, in order.
    pub tool_calls: Vec<ToolCallRecord>,
}

/// A task's overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Every question correct.
    Pass,
    /// Some question wrong, unparsable or over budget.
    Fail,
    /// Some question hit a runtime error.
    Error,
}

impl TaskStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pass => "pass",
            TaskStatus::Fail => "fail",
            TaskStatus::Error => "error",
        }
    }
}

/// `error` if any runtime_error; else `fail` if any budget_exceeded or any answer not
/// correct (incorrect or parse_error); else `pass`.
pub fn task_status(results: &[QuestionResult]) -> TaskStatus {
    if results.iter().any(|r| r.verdict == Verdict::RuntimeError) {
        TaskStatus::Error
    } else if results.iter().all(|r| r.verdict == Verdict::Correct) {
        TaskStatus::Pass
    } else {
        TaskStatus::Fail
    }
}

/// Counts per verdict and accuracy for a task.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct VerdictCounts {
    /// Questions evaluated.
    pub total: usize,
    /// Correct answers.
    pub correct: usize,
    /// Wrong answers.
    pub incorrect: usize,
    /// Unreadable replies.
    pub parse_error: usize,
    /// Provider or limiter failures.
    pub runtime_error: usize,
    /// Budgets exhausted.
    pub budget_exceeded: usize,
    /// correct / total (0 when there are no questions).
    pub accuracy: f64,
}

impl VerdictCounts {
    /// Tallies results.
    pub fn of(results: &[QuestionResult]) -> VerdictCounts {
        let mut counts = VerdictCounts {
            total: results.len(),
            ..VerdictCounts::default()
        };
        for r in results {
            match r.verdict {
                Verdict::Correct => counts.correct += 1,
                Verdict::Incorrect => counts.incorrect += 1,
                Verdict::ParseError => counts.parse_error += 1,
                Verdict::RuntimeError => counts.runtime_error += 1,
                Verdict::BudgetExceeded => counts.budget_exceeded += 1,
            }
        }
        if counts.total > 0 {
            counts.accuracy = counts.correct as f64 / counts.total as f64;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(verdict: Verdict) -> QuestionResult {
        QuestionResult {
            index: 0,
            id: "q1".into(),
            question: "?".into(),
            verdict,
            parsed_answer: None,
            correct_answers: vec![],
            error: None,
            tokens: TokenUsage::default(),
            wall_time_ms: 0,
            steps: 0,
            provider_requests: 0,
            tool_calls: vec![],
        }
    }

    #[test]
    fn task_status_follows_the_rule() {
        use Verdict::*;
        let status =
            |vs: &[Verdict]| task_status(&vs.iter().map(|v| result(*v)).collect::<Vec<_>>());
        assert_eq!(status(&[Correct, Correct]), TaskStatus::Pass);
        assert_eq!(status(&[Correct, Incorrect]), TaskStatus::Fail);
        assert_eq!(status(&[Correct, ParseError]), TaskStatus::Fail);
        assert_eq!(status(&[Correct, BudgetExceeded]), TaskStatus::Fail);
        assert_eq!(
            status(&[Incorrect, RuntimeError, BudgetExceeded]),
            TaskStatus::Error
        );
        let counts = VerdictCounts::of(&[
            result(Correct),
            result(Incorrect),
            result(Correct),
            result(RuntimeError),
        ]);
        assert_eq!(
            (counts.total, counts.correct, counts.runtime_error),
            (4, 2, 1)
        );
        assert!((counts.accuracy - 0.5).abs() < 1e-9);
    }
}
