//! The agent: one run per question. It sends the conversation through the
//! [`CallPipeline`](super::pipeline::CallPipeline), runs the read-only tools the model asks
//! for, and stops at the first reply without tool calls, reading its `<answer>`. Budgets
//! (`max_steps`, `budget.max_tokens`, `budget.max_seconds`) end the run with
//! `budget_exceeded`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::BudgetConfig;
use super::eval::{QuestionResult, ToolCallRecord, Verdict};
use super::output::{Output, Style};
use super::pipeline::{CallContext, CallPipeline};
use super::prompt::{initial_messages, parse_answer};
use super::provider::{ChatMessage, ChatRequest, TokenUsage, ToolCall};
use super::questions::Question;
use super::tools::RepoTools;

/// What an agent run may use.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// Model name sent to the provider.
    pub model: String,
    /// Most provider responses per question.
    pub max_steps: u32,
    /// Sampling temperature.
    pub temperature: f64,
    /// `max_tokens` of every request (the reservation's output bound).
    pub max_output_tokens: u64,
    /// Token and time budgets per question.
    pub budget: BudgetConfig,
}

/// Answers questions of one task.
#[derive(Clone)]
pub struct Agent {
    task: String,
    settings: AgentSettings,
    pipeline: CallPipeline,
    tools: Arc<RepoTools>,
    output: Output,
}

/// The running state of one question.
struct Progress {
    started: Instant,
    tokens: TokenUsage,
    steps: u32,
    tool_calls: Vec<ToolCallRecord>,
    ctx: CallContext,
}

/// How a run ended before producing a result.
struct Ending {
    verdict: Verdict,
    parsed_answer: Option<String>,
    error: Option<String>,
}

impl Ending {
    fn failed(verdict: Verdict, error: impl Into<String>) -> Ending {
        Ending {
            verdict,
            parsed_answer: None,
            error: Some(error.into()),
        }
    }
}

impl Agent {
    /// An agent for `task` using `pipeline` for provider calls and `tools` over the repo.
    pub fn new(
        task: impl Into<String>,
        settings: AgentSettings,
        pipeline: CallPipeline,
        tools: Arc<RepoTools>,
        output: Output,
    ) -> Agent {
        Agent {
            task: task.into(),
            settings,
            pipeline,
            tools,
            output,
        }
    }

    /// Runs the agent on the question at `index` and returns its result (never fails: every
    /// problem becomes a verdict).
    pub async fn evaluate(&self, index: usize, question: &Question) -> QuestionResult {
        let mut progress = Progress {
            started: Instant::now(),
            tokens: TokenUsage::default(),
            steps: 0,
            tool_calls: Vec::new(),
            ctx: CallContext {
                task: self.task.clone(),
                question: question.display_id(index),
                ..CallContext::default()
            },
        };
        let seconds = self.settings.budget.max_seconds;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let ending =
            match tokio::time::timeout_at(deadline, self.converse(question, &mut progress)).await {
                Ok(ending) => ending,
                Err(_) => Ending::failed(
                    Verdict::BudgetExceeded,
                    format!(
                        "budget.max_seconds ({seconds} s) exceeded during step {}",
                        progress.ctx.step
                    ),
                ),
            };
        let result = QuestionResult {
            index,
            id: progress.ctx.question.clone(),
            question: question.question.clone(),
            verdict: ending.verdict,
            parsed_answer: ending.parsed_answer,
            correct_answers: question.correct_answers.clone(),
            error: ending.error,
            tokens: progress.tokens,
            wall_time_ms: u64::try_from(progress.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            steps: progress.steps,
            provider_requests: progress.ctx.requests_sent,
            tool_calls: progress.tool_calls,
        };
        self.report(&result);
        result
    }

    /// The conversation loop; returns how it ended.
    async fn converse(&self, question: &Question, progress: &mut Progress) -> Ending {
        let mut messages = initial_messages(question);
        let max_steps = self.settings.max_steps.max(1);
        for step in 1..=max_steps {
            progress.ctx.step = step;
            let request = ChatRequest {
                model: self.settings.model.clone(),
                messages: messages.clone(),
                tools: Some(RepoTools::definitions()),
                temperature: self.settings.temperature,
                max_tokens: Some(self.settings.max_output_tokens),
            };
            let response = match self.pipeline.run_call(&mut progress.ctx, request).await {
                Ok(response) => response,
                Err(error) => return Ending::failed(Verdict::RuntimeError, error.to_string()),
            };
            progress.steps = step;
            if let Some(usage) = &response.usage {
                progress.tokens.add(usage);
            }
            let limit = self.settings.budget.max_tokens;
            if progress.tokens.total() > limit {
                return Ending::failed(
                    Verdict::BudgetExceeded,
                    format!(
                        "budget.max_tokens ({limit}) exceeded: {} tokens after step {step}",
                        progress.tokens.total()
                    ),
                );
            }
            let Some(choice) = response.choices.into_iter().next() else {
                return Ending::failed(Verdict::RuntimeError, "provider response has no choices");
            };
            let message = choice.message;
            if message.tool_calls.is_empty() {
                return self.judge(question, message.content.as_deref().unwrap_or(""));
            }
            let calls = message.tool_calls.clone();
            messages.push(ChatMessage {
                role: "assistant".into(),
                ..message
            });
            for call in calls {
                let content = self.run_tool(step, &call, progress).await;
                messages.push(ChatMessage::tool_result(&call.id, content));
            }
        }
        Ending::failed(
            Verdict::BudgetExceeded,
            format!("max_steps ({max_steps}) reached without a final answer"),
        )
    }

    /// Runs one tool call off the async thread and records it.
    async fn run_tool(&self, step: u32, call: &ToolCall, progress: &mut Progress) -> String {
        let tools = Arc::clone(&self.tools);
        let name = call.function.name.clone();
        let arguments = call.function.arguments.clone();
        let result = tokio::task::spawn_blocking(move || tools.call(&name, &arguments))
            .await
            .unwrap_or_else(|e| {
                Err(super::tools::ToolError::Io {
                    path: String::new(),
                    message: format!("tool task failed: {e}"),
                })
            });
        let ok = result.is_ok();
        let content = match result {
            Ok(text) => text,
            Err(error) => format!("error: {error}"),
        };
        if self.output.wants_detail() {
            self.output.detail(&format!(
                "[{} {}] step {step} tool {} {} → {} ({} bytes)",
                self.task,
                progress.ctx.question,
                call.function.name,
                call.function.arguments,
                if ok { "ok" } else { "error" },
                content.len()
            ));
        }
        progress.tool_calls.push(ToolCallRecord {
            step,
            name: call.function.name.clone(),
            arguments: call.function.arguments.clone(),
            ok,
        });
        content
    }

    /// Reads the final reply and compares it with the correct answers.
    fn judge(&self, question: &Question, reply: &str) -> Ending {
        match parse_answer(reply) {
            Ok(answer) => Ending {
                verdict: if question.is_correct(&answer) {
                    Verdict::Correct
                } else {
                    Verdict::Incorrect
                },
                parsed_answer: Some(answer),
                error: None,
            },
            Err(failure) => Ending::failed(Verdict::ParseError, failure.0),
        }
    }

    fn report(&self, result: &QuestionResult) {
        if !self.output.wants_detail() {
            return;
        }
        let style = match result.verdict {
            Verdict::Correct => Style::Green,
            Verdict::Incorrect | Verdict::RuntimeError => Style::Red,
            Verdict::ParseError | Verdict::BudgetExceeded => Style::Yellow,
        };
        let answer = result.parsed_answer.as_deref().unwrap_or("-");
        let error = result
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        self.output.detail(&format!(
            "[{} {}] {} answer {answer:?}{error}",
            self.task,
            result.id,
            self.output.paint(style, result.verdict.as_str())
        ));
    }
}
