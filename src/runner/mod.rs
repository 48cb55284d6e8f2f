//! Cogni: the repository question evaluator that runs its LLM calls through the limiter.
