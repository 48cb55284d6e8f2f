//! Per-task worker pool: `concurrency` [`QuestionWorker`] actors, each on its own arbiter
//! (thread) and evaluating one question at a time. The pool hands the next question to whichever worker finishes first and stores
//! every result at its question index, so results come back in question order whatever the
//! completion order.

use std::sync::Arc;

use actix::prelude::*;
use futures::stream::{FuturesUnordered, StreamExt};

use super::agent::Agent;
use super::eval::{QuestionResult, Verdict};
use super::provider::TokenUsage;
use super::questions::Question;

/// Evaluate the question at `index`.
#[derive(Message)]
#[rtype(result = "QuestionResult")]
pub struct Evaluate {
    /// Position in the questions file.
    pub index: usize,
    /// The question.
    pub question: Arc<Question>,
}

/// A worker actor: runs the agent on the questions it is sent.
pub struct QuestionWorker {
    agent: Arc<Agent>,
}

impl QuestionWorker {
    /// A worker using `agent`.
    pub fn new(agent: Arc<Agent>) -> QuestionWorker {
        QuestionWorker { agent }
    }
}

impl Actor for QuestionWorker {
    type Context = Context<Self>;
}

impl Handler<Evaluate> for QuestionWorker {
    type Result = ResponseFuture<QuestionResult>;

    fn handle(&mut self, msg: Evaluate, _ctx: &mut Self::Context) -> Self::Result {
        let agent = Arc::clone(&self.agent);
        Box::pin(async move { agent.evaluate(msg.index, &msg.question).await })
    }
}

/// The result recorded when a worker died before answering.
fn lost_result(index: usize, question: &Question, error: &MailboxError) -> QuestionResult {
    QuestionResult {
        index,
        id: question.display_id(index),
        question: question.question.clone(),
        verdict: Verdict::RuntimeError,
        parsed_answer: None,
        correct_answers: question.correct_answers.clone(),
        error: Some(format!("worker stopped before answering: {error}")),
        tokens: TokenUsage::default(),
        wall_time_ms: 0,
        steps: 0,
        provider_requests: 0,
        tool_calls: Vec::new(),
    }
}

/// Evaluates `questions` with `workers` worker actors (at least 1, at most one per question);
/// `on_done` sees each result as it completes. Must run inside an actix System; the
/// workers' arbiters are stopped before it returns.
pub async fn run_pool(
    agent: Arc<Agent>,
    questions: &[Question],
    workers: usize,
    mut on_done: impl FnMut(&QuestionResult),
) -> Vec<QuestionResult> {
    let questions: Vec<Arc<Question>> = questions.iter().cloned().map(Arc::new).collect();
    let count = workers.clamp(1, questions.len().max(1));
    let arbiters: Vec<Arbiter> = (0..count).map(|_| Arbiter::new()).collect();
    let addrs: Vec<Addr<QuestionWorker>> = arbiters
        .iter()
        .map(|arbiter| {
            let worker = QuestionWorker::new(Arc::clone(&agent));
            QuestionWorker::start_in_arbiter(&arbiter.handle(), move |_| worker)
        })
        .collect();
    let dispatch = |worker: usize, index: usize| {
        let request = addrs[worker].send(Evaluate {
            index,
            question: Arc::clone(&questions[index]),
        });
        async move { (worker, index, request.await) }
    };
    let mut slots: Vec<Option<QuestionResult>> = vec![None; questions.len()];
    let mut in_flight = FuturesUnordered::new();
    let mut next = 0;
    for worker in 0..count {
        if next < questions.len() {
            in_flight.push(dispatch(worker, next));
            next += 1;
        }
    }
    while let Some((worker, index, answer)) = in_flight.next().await {
        let result = answer.unwrap_or_else(|e| lost_result(index, &questions[index], &e));
        on_done(&result);
        slots[index] = Some(result);
        if next < questions.len() {
            in_flight.push(dispatch(worker, next));
            next += 1;
        }
    }
    drop(addrs);
    for arbiter in &arbiters {
        arbiter.stop();
    }
    slots
        .into_iter()
        .zip(questions.iter())
        .enumerate()
        .map(|(index, (slot, question))| {
            slot.unwrap_or_else(|| lost_result(index, question, &MailboxError::Closed))
        })
        .collect()
}
