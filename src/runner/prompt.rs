//! The prompt the agent gets for a question, and how its final reply is read: the reply must
//! contain exactly one `<answer>…</answer>`.

use super::provider::ChatMessage;
use super::questions::Question;

/// The system message: what the agent is, which tools it has, how to answer.
pub const SYSTEM_PROMPT: &str = "You answer multiple-choice questions about a code repository. \
You may inspect the repository with the read-only tools list_dir, read_file and search_text \
(paths are relative to the repository root). When you are sure, reply with a short \
justification and end the reply with exactly one <answer>CHOICE</answer>, where CHOICE is one \
of the listed choices copied exactly.";

/// The opening messages for a question.
pub fn initial_messages(question: &Question) -> Vec<ChatMessage> {
    vec![
        ChatMessage::text("system", SYSTEM_PROMPT),
        ChatMessage::text("user", user_prompt(question)),
    ]
}

/// The user message: the question, the choices, the answer format.
pub fn user_prompt(question: &Question) -> String {
    let mut text = format!("Question: {}\n\nChoices:\n", question.question.trim());
    for answer in &question.answers {
        text.push_str("- ");
        text.push_str(answer.trim());
        text.push('\n');
    }
    text.push_str("\nEnd your reply with a single <answer>…</answer> holding one of the choices.");
    text
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure(pub String);

/// Extracts the single `<answer>…</answer>` of a reply (tags case-insensitive, content trimmed).
pub fn parse_answer(reply: &str) -> Result<String, ParseFailure> {
    let lower = reply.to_ascii_lowercase();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = lower[from..].find("<answer>") {
        let start = from + open + "<answer>".len();
        let Some(close) = lower[start..].find("</answer>") else {
            return Err(ParseFailure("<answer> without a closing </answer>".into()));
        };
        found.push(reply[start..start + close].trim().to_string());
        from = start + close + "</answer>".len();
    }
    match found.len() {
        0 => Err(ParseFailure("no <answer>…</answer> in the reply".into())),
        1 if found[0].is_empty() => Err(ParseFailure("empty <answer></answer>".into())),
        1 => Ok(found.remove(0)),
        n => Err(ParseFailure(format!(
            "{n} <answer> tags in the reply; expected exactly one"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exactly_one_answer_tag() {
        assert_eq!(
            parse_answer("because.\n<answer> Rust </answer>\n"),
            Ok("Rust".into())
        );
        assert_eq!(parse_answer("<ANSWER>go</Answer>"), Ok("go".into()));
        assert!(parse_answer("Rust").unwrap_err().0.contains("no <answer>"));
        assert!(parse_answer("<answer></answer>")
            .unwrap_err()
            .0
            .contains("empty"));
        assert!(parse_answer("<answer>a</answer><answer>b</answer>")
            .unwrap_err()
            .0
            .contains("2 <answer> tags"));
        assert!(parse_answer("<answer>a")
            .unwrap_err()
            .0
            .contains("without a closing"));
    }

    #[test]
    fn the_prompt_lists_every_choice() {
        let q = Question {
            id: None,
            question: " Which? ".into(),
            answers: vec!["a".into(), " b".into()],
            correct_answers: vec!["a".into()],
        };
        let text = user_prompt(&q);
        assert!(text.starts_with("Question: Which?\n\nChoices:\n- a\n- b\n"));
        assert_eq!(initial_messages(&q).len(), 2);
    }
}
