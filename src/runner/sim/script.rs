//! Scripts for the simulator: which agent to play for which question. A rule matches when
//! its `match` text occurs in the question (the first user message); the agent then makes
//! one tool call per step, in order, and finally replies `<answer>X</answer>` (or a raw
//! `reply`). The step is read from the conversation itself (the number of assistant
//! messages so far), so the simulator is stateless per conversation and deterministic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use thiserror::Error;

use crate::runner::provider::{ChatMessage, ChatRequest, TokenUsage};

/// The special answer meaning "the first listed choice".
pub const FIRST_CHOICE: &str = "$first";

/// A scripted tool call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedToolCall {
    /// Tool name.
    pub name: String,
    /// Arguments object.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// One scripted agent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Substring of the question selecting this rule (absent on the default rule).
    #[serde(default, rename = "match")]
    pub matches: Option<String>,
    /// Tool calls, one per step, before the final reply.
    #[serde(default)]
    pub tool_calls: Vec<ScriptedToolCall>,
    /// Final answer put in `<answer>…</answer>`; `$first` = first listed choice.
    #[serde(default)]
    pub answer: Option<String>,
    /// Exact final reply instead of an answer tag (e.g. to provoke a parse error).
    #[serde(default)]
    pub reply: Option<String>,
    /// Latency of this rule's responses, overriding the server's.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// HTTP statuses returned to the first requests matching this rule, one per request.
    #[serde(default)]
    pub fail_first: Vec<u16>,
    /// Retry-After sent with scripted failures.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
    /// Usage to report instead of the computed one.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
    /// Requests that matched this rule so far (drives `fail_first`).
    #[serde(skip)]
    seen: AtomicUsize,
}

/// A whole script: rules tried in order, then the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// What to do when no rule matches (default: answer the first choice at once).
    #[serde(default)]
    pub default: Rule,
}

/// What the simulator should send back for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// An HTTP error status (scripted failure).
    Fail {
        /// Status code.
        status: u16,
        /// Retry-After to send.
        retry_after_ms: u64,
    },
    /// An assistant message.
    Message {
        /// The message.
        message: ChatMessage,
        /// Usage override, if scripted.
        usage: Option<TokenUsage>,
    },
}

/// Why a script could not be used.
#[derive(Debug, Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The script file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a script (the parser's message names the field, line and column).
    #[error("{source}")]
    Parse {
        /// The parser's error.
        source: serde_yaml::Error,
    },
    /// The script file is not a script.
    #[error("{path}: {source}")]
    InFile {
        /// The script file.
        path: PathBuf,
        /// The parser's error.
        source: serde_yaml::Error,
    },
}

impl Script {
    /// Reads a script (YAML or JSON).
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| ScriptError::InFile {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses script text.
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        serde_yaml::from_str(text).map_err(|source| ScriptError::Parse { source })
    }

    /// The rule for a request: the first whose `match` occurs in the question.
    pub fn rule_for(&self, request: &ChatRequest) -> &Rule {
        let question = question_of(request);
        self.rules
            .iter()
            .find(|r| r.matches.as_deref().is_some_and(|m| question.contains(m)))
            .unwrap_or(&self.default)
    }
}

impl Rule {
    /// The response latency for this rule given the server default.
    pub fn latency_ms(&self, default_ms: u64) -> u64 {
        self.latency_ms.unwrap_or(default_ms)
    }

    /// Decides the reply to `request` (counts the request against `fail_first`).
    pub fn reply(&self, request: &ChatRequest) -> Reply {
        let seen = self.seen.fetch_add(1, Ordering::SeqCst);
        if let Some(&status) = self.fail_first.get(seen) {
            return Reply::Fail {
                status,
                retry_after_ms: self.retry_after_ms.unwrap_or(50),
            };
        }
        let step = request
            .messages
            .iter()
            .filter(|m| m.role == "assistant")
            .count();
        let message = match self.tool_calls.get(step) {
            Some(call) => ChatMessage {
                role: "assistant".into(),
                content: None,
                tool_calls: vec![crate::runner::provider::ToolCall {
                    id: format!("call_{step}"),
                    kind: "function".into(),
                    function: crate::runner::provider::FunctionCall {
                        name: call.name.clone(),
                        arguments: call.arguments.to_string(),
                    },
                }],
                tool_call_id: None,
            },
            None => ChatMessage::text("assistant", self.final_reply(request)),
        };
        Reply::Message {
            message,
            usage: self.usage,
        }
    }

    fn final_reply(&self, request: &ChatRequest) -> String {
        if let Some(reply) = &self.reply {
            return reply.clone();
        }
        let answer = match self.answer.as_deref() {
            None | Some(FIRST_CHOICE) => first_choice(request).unwrap_or_default(),
            Some(text) => text.to_string(),
        };
        format!("Based on the repository, the answer is:\n<answer>{answer}</answer>")
    }
}

/// The question: the first user message.
pub fn question_of(request: &ChatRequest) -> &str {
    request
        .messages
        .iter()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.as_deref())
        .unwrap_or("")
}

/// The first `- choice` line after `Choices:` in the question.
pub fn first_choice(request: &ChatRequest) -> Option<String> {
    let question = question_of(request);
    let after = &question[question.find("Choices:")?..];
    after
        .lines()
        .find_map(|line| line.trim().strip_prefix("- "))
        .map(|choice| choice.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages,
            tools: None,
            temperature: 0.0,
            max_tokens: Some(10),
        }
    }

    #[test]
    fn rules_play_tool_steps_then_answer() {
        let script = Script::parse(
            "rules:\n  - { match: lang, tool_calls: [ {name: list_dir} ], answer: Rust }\n",
        )
        .unwrap();
        let user = ChatMessage::text("user", "Question: which lang?\n\nChoices:\n- Go\n- Rust\n");
        let first = request(vec![user.clone()]);
        let Reply::Message { message, .. } = script.rule_for(&first).reply(&first) else {
            panic!()
        };
        assert_eq!(message.tool_calls[0].function.name, "list_dir");
        let second = request(vec![
            user.clone(),
            message,
            ChatMessage::tool_result("call_0", "x"),
        ]);
        let Reply::Message { message, .. } = script.rule_for(&second).reply(&second) else {
            panic!()
        };
        assert!(message.content.unwrap().ends_with("<answer>Rust</answer>"));
        let other = request(vec![ChatMessage::text(
            "user",
            "Question: x?\n\nChoices:\n- Go\n- Rust\n",
        )]);
        let Reply::Message { message, .. } = script.rule_for(&other).reply(&other) else {
            panic!()
        };
        assert!(
            message.content.unwrap().ends_with("<answer>Go</answer>"),
            "default answers the first choice"
        );
    }

    #[test]
    fn fail_first_counts_requests() {
        let script =
            Script::parse("default: { fail_first: [429, 500], retry_after_ms: 7 }").unwrap();
        let r = request(vec![ChatMessage::text("user", "q")]);
        assert_eq!(
            script.rule_for(&r).reply(&r),
            Reply::Fail {
                status: 429,
                retry_after_ms: 7
            }
        );
        assert_eq!(
            script.rule_for(&r).reply(&r),
            Reply::Fail {
                status: 500,
                retry_after_ms: 7
            }
        );
        assert!(matches!(
            script.rule_for(&r).reply(&r),
            Reply::Message { .. }
        ));
    }
}
