Feature: Cogni evaluates questions concurrently under rate limits
  Cogni runs an LLM agent once per question and sends every provider request through the
  limiter (reserve before, complete after). These are the four Cogni scenarios of SPEC §8.
  Each scenario runs cogni in-process against its own llm-sim provider simulator; the
  agent's provider is "sim" and its model "sim-1", so its limit keys are
  global:llm:sim:sim-1:rpm, :tpm and :concurrency.

  Scenario: 1. With the limiter disabled, two workers overlap provider latency
    Given a provider that takes 150 ms per call
    And a repository with 2 questions
    And limiter mode "disabled" with 2 workers
    When cogni evaluates the questions
    Then every question is answered correctly
    And the provider saw 2 calls in flight at once
    And the run took less than 300 ms

  Scenario: 2. An embedded limits file with a concurrency cap of 1 keeps one call in flight
    Given a provider that takes 100 ms per call
    And a repository with 2 questions
    And a limits file with a concurrency cap of 1
    And limiter mode "embedded" reading the limits file with 2 workers
    When cogni evaluates the questions
    Then every question is answered correctly
    And the provider never saw more than 1 call in flight
    And the run took less than 500 ms

  Scenario: 3. Inline embedded limits with a concurrency cap of 1 keep one call in flight
    Given a provider that takes 100 ms per call
    And a repository with 2 questions
    And limiter mode "embedded" with inline limits of concurrency cap 1 and 2 workers
    When cogni evaluates the questions
    Then every question is answered correctly
    And the provider never saw more than 1 call in flight
    And the run took less than 500 ms

  Scenario: 4. In remote mode a running ratelimiterd sees the reserves and completes
    Given a provider that takes 50 ms per call
    And a repository with 2 questions
    And a running ratelimiterd with a concurrency cap of 1
    And limiter mode "remote" pointing at the running ratelimiterd with 2 workers
    When cogni evaluates the questions
    Then every question is answered correctly
    And ratelimiterd saw at least 1 reserve and 1 complete
    And the run took less than 1000 ms
