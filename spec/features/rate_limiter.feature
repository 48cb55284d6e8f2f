Feature: Rate limiter acceptance behaviour
  ratelimiterd enforces every limit of a call at once over HTTP: clients reserve before a
  call and complete after it. Scenarios 1-6 are the rate-limiter scenarios of SPEC §8,
  7 and 8 the lease table's rules of SPEC §9, 9 and 10 its impossible requests and exact
  hints. Every scenario starts its own server; limit names below are scoped to the
  scenario, so the same scenarios run unchanged against the memory and the TigerBeetle
  backends.

  Scenario: 1. A rolling limit allows up to its capacity, then denies
    Given a rolling limit "rpm" with capacity 2 and a 60 second window
    When I reserve 1 of "rpm"
    Then the reserve is allowed within 200 ms
    When I reserve 1 of "rpm"
    Then the reserve is allowed within 200 ms
    When I reserve 1 of "rpm"
    Then the reserve is denied with a retry-after hint within 200 ms
    And "rpm" has 2 in use and 0 available

  Scenario: 2. A multi-key reserve takes all of its keys or none
    Given a rolling limit "provider" with capacity 1 and a 60 second window
    And a rolling limit "user" with capacity 100 and a 60 second window
    When I reserve 2 of "provider" and 2 of "user"
    Then the reserve is refused with "exceeds_capacity" for "provider" and no retry-after within 200 ms
    And "user" has 0 in use and 100 available
    And "provider" has 0 in use and 1 available

  Scenario: 3. Completing a concurrency hold frees it at once
    Given a concurrency limit "inflight" with capacity 1 and a 120 second timeout
    When I reserve 1 of "inflight" as lease "first"
    Then the reserve is allowed within 200 ms
    When I reserve 1 of "inflight"
    Then the reserve is denied with a retry-after hint within 200 ms
    When lease "first" completes with nothing
    Then the complete succeeds within 200 ms
    When I reserve 1 of "inflight"
    Then the reserve is allowed within 200 ms

  Scenario: 4. Usage above the reservation becomes debt
    Given a rolling limit "tpm" with capacity 100 and a 60 second window and overage "debt"
    When I reserve 100 of "tpm" as lease "call"
    Then the reserve is allowed within 200 ms
    When lease "call" completes with 150 of "tpm"
    Then the complete succeeds within 200 ms
    And "tpm" has a debt of 50

  Scenario: 5. A batch is answered in order
    Given a rolling limit "rpm" with capacity 1 and a 60 second window
    When I send a batch of 2 reserves of 1 of "rpm"
    Then the batch is answered within 300 ms
    And batch result 1 is allowed
    And batch result 2 is denied with a retry-after hint

  Scenario: 6. A capacity decrease waits until enough capacity is free
    Given a rolling limit "tpm" with capacity 100 and a 60 second window
    And the decrease applier runs every 20 ms
    And I reserve 50 of "tpm" as lease "a"
    And I reserve 30 of "tpm" as lease "b"
    When I change the capacity of "tpm" to 60
    Then "tpm" is decreasing to 60 within 200 ms
    When I reserve 1 of "tpm"
    Then the reserve is denied with "limit_decreasing" for "tpm" within 200 ms
    When lease "a" completes with 40 of "tpm"
    Then "tpm" is still decreasing after 100 ms, with 30 available
    When lease "b" completes with 0 of "tpm"
    Then "tpm" is active with capacity 60 within 500 ms
    When I reserve 20 of "tpm"
    Then the reserve is allowed within 200 ms
    When I reserve 1 of "tpm"
    Then the reserve is denied with a retry-after hint within 200 ms

  Scenario: 7. Denials never push a lease in flight out of the lease table
    Given the lease table holds 3 leases
    And a rolling limit "daily" with capacity 10 and a 86400 second window
    And a concurrency limit "inflight" with capacity 1 and a 600 second timeout
    And I reserve 1 of "inflight" as lease "call"
    And I reserve 10 of "daily" as lease "budget"
    When 20 reserves of 1 of "daily" are denied
    And lease "call" completes with nothing
    Then the complete succeeds within 200 ms
    And "inflight" has 0 in use and 1 available
    When I reserve 1 of "inflight"
    Then the reserve is allowed within 200 ms

  Scenario: 8. A lease table full of leases in flight refuses new reserves and takes nothing
    Given the lease table holds 2 leases
    And a concurrency limit "inflight" with capacity 5 and a 600 second timeout
    And I reserve 1 of "inflight" as lease "a"
    And I reserve 1 of "inflight" as lease "b"
    When I reserve 1 of "inflight"
    Then the reserve fails with "backend_error" within 200 ms
    And "inflight" has 2 in use and 3 available
    When lease "a" completes with nothing
    And I reserve 1 of "inflight"
    Then the reserve is allowed within 200 ms

  Scenario: 9. A requirement above its key's capacity is refused at once and takes nothing
    Given a rolling limit "tpm" with capacity 100 and a 60 second window
    And a rolling limit "user" with capacity 1000 and a 60 second window
    When I reserve 101 of "tpm" and 1 of "user"
    Then the reserve is refused with "exceeds_capacity" for "tpm" and no retry-after within 200 ms
    And "tpm" has 0 in use and 100 available
    And "user" has 0 in use and 1000 available
    When I reserve 100 of "tpm"
    Then the reserve is allowed within 200 ms

  Scenario: 10. A denied rolling reserve is told when capacity frees, not a backoff guess
    Given a rolling limit "rpm" with capacity 1 and a 60 second window
    When I reserve 1 of "rpm"
    Then the reserve is allowed within 200 ms
    When I reserve 1 of "rpm"
    Then the reserve is denied with a retry-after hint between 59000 and 61100 ms
