#!/usr/bin/env bash
# Outage benchmark: how fast ratelimiterd answers while TigerBeetle is down, against the
# same load while it is up (the reference, measured in the same run), and how long the
# service takes to answer normally again once TigerBeetle listens again.
#
# For each policy (deny, allow): start TigerBeetle (--development, fresh data file) and
# ratelimiterd on loopback ports; run ratelimiter-loadtest for DURATION (reference); kill
# TigerBeetle; wait until /readyz says the backend is down; run the same load again; restart
# TigerBeetle on the same data file and time until /readyz answers 200 again.
#
# Every step is bounded (load durations, polling loops with a fixed number of tries), and
# every process started here is stopped on exit.
#
# Usage: scripts/outage-bench.sh [BIN_DIR] [DURATION]
#   BIN_DIR   directory holding ratelimiterd and ratelimiter-loadtest built with
#             `--features tigerbeetle` (default: target/release)
#   DURATION  length of each load run (default: 3s)
# Environment: TB_BIN (TigerBeetle 0.16.78 server; default: scripts/provision-tigerbeetle.sh)
set -euo pipefail

BIN_DIR="${1:-target/release}"
DURATION="${2:-3s}"
CONCURRENCY=16
TB="${TB_BIN:-$(scripts/provision-tigerbeetle.sh)}"
WORK="$(mktemp -d /tmp/outage-bench.XXXXXX)"
TB_PID=""
SERVER_PID=""

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$TB_PID" ] && kill -9 "$TB_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now_ms() { date +%s%3N; }

# Waits up to $2 tries of 10 ms for `curl /readyz` to answer status $1.
wait_ready() {
    local want="$1" tries="$2" code
    for _ in $(seq "$tries"); do
        code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/readyz" || true)"
        [ "$code" = "$want" ] && return 0
        sleep 0.01
    done
    echo "outage-bench: /readyz did not answer $want in time" >&2
    return 1
}

start_tb() {
    "$TB" start --addresses="127.0.0.1:$TB_PORT" --development "$WORK/0_0.tigerbeetle" \
        >"$WORK/tb.log" 2>&1 &
    TB_PID=$!
    for _ in $(seq 600); do
        grep -q "listening on" "$WORK/tb.log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "outage-bench: TigerBeetle did not start" >&2
    return 1
}

# One provider/model with limits too large to deny: this measures the limiter itself.
cat >"$WORK/limits.json" <<'EOF'
[
  {"key": "global:llm:bench:bench-1:rpm", "kind": "rolling", "capacity": 1000000000000, "window_seconds": 60},
  {"key": "global:llm:bench:bench-1:tpm", "kind": "rolling", "capacity": 1000000000000, "window_seconds": 60},
  {"key": "global:llm:bench:bench-1:concurrency", "kind": "concurrency", "capacity": 1000000000, "timeout_seconds": 60}
]
EOF

load() {
    "$BIN_DIR/ratelimiter-loadtest" --mode http --backend tigerbeetle \
        --url "http://127.0.0.1:$HTTP_PORT" --limits "$WORK/limits.json" \
        --duration "$DURATION" --concurrency "$CONCURRENCY" 2>/dev/null | grep -E '^(reserves|reserve latency)' || true
}

for POLICY in deny allow; do
    rm -f "$WORK"/0_0.tigerbeetle "$WORK/registry.json"
    "$TB" format --cluster=0 --replica=0 --replica-count=1 --development "$WORK/0_0.tigerbeetle" \
        >/dev/null 2>&1
    TB_PORT="$(free_port)"
    HTTP_PORT="$(free_port)"
    start_tb
    RUST_LOG=warn "$BIN_DIR/ratelimiterd" --backend tigerbeetle --tb-addresses "127.0.0.1:$TB_PORT" \
        --listen "127.0.0.1:$HTTP_PORT" --registry "$WORK/registry.json" \
        --limits "$WORK/limits.json" --backend-down "$POLICY" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready 200 3000

    echo "== backend_down: $POLICY, concurrency $CONCURRENCY, $DURATION per run"
    echo "-- reference: TigerBeetle up"
    load
    kill -9 "$TB_PID"
    wait "$TB_PID" 2>/dev/null || true
    TB_PID=""
    # The first request after the kill waits for request_timeout_ms and marks it down.
    curl -s --max-time 10 -o /dev/null -X POST -H 'Content-Type: application/json' \
        -d '{"lease_id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","requirements":[{"key":"global:llm:bench:bench-1:rpm","amount":1}]}' \
        "http://127.0.0.1:$HTTP_PORT/v1/reserve" || true
    wait_ready 503 1000
    echo "-- TigerBeetle down (known down)"
    load
    start_tb
    started="$(now_ms)"
    wait_ready 200 1000
    echo "-- recovered: /readyz 200 $(( $(now_ms) - started )) ms after TigerBeetle listened again"

    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    kill -9 "$TB_PID"
    wait "$TB_PID" 2>/dev/null || true
    TB_PID=""
done
