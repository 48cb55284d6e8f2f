#!/usr/bin/env bash
# Metrics benchmark: does scraping GET /metrics slow the hot path? One release ratelimiterd
# (memory backend) holds the load-test limits plus KEYS more (every scrape reports all of
# them); ratelimiter-loadtest runs ROUNDS pairs of rounds against it: a reference round
# without scrapes, then the same load with a scrape loop of about 10 scrapes/s, alternating,
# all in one run. Prints each round, the mean reserves/s of both kinds, their ratio, and the
# scrapes' count, size and median time.
#
# Every step is bounded (load durations, polling loops with a fixed number of tries), and
# every process started here is stopped on exit.
#
# Usage: scripts/metrics-bench.sh [BIN_DIR] [DURATION] [ROUNDS] [KEYS]
#   BIN_DIR   directory holding ratelimiterd and ratelimiter-loadtest (default: target/release)
#   DURATION  length of each load round (default: 5s)
#   ROUNDS    pairs of rounds (default: 3)
#   KEYS      limits defined besides the load test's three (default: 1000)
set -euo pipefail

BIN_DIR="${1:-target/release}"
DURATION="${2:-5s}"
ROUNDS="${3:-3}"
KEYS="${4:-1000}"
CONCURRENCY=32
WORK="$(mktemp -d /tmp/metrics-bench.XXXXXX)"
SERVER_PID=""
SCRAPER_PID=""

cleanup() {
    [ -n "$SCRAPER_PID" ] && kill "$SCRAPER_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"

# One provider/model with limits too large to deny (this measures the limiter itself), and
# KEYS more limits that only the scrapes read.
python3 - "$KEYS" >"$WORK/limits.json" <<'EOF'
import json, sys
big = 10**12
limits = [
    {"key": "global:llm:bench:bench-1:rpm", "kind": "rolling", "capacity": big, "window_seconds": 60},
    {"key": "global:llm:bench:bench-1:tpm", "kind": "rolling", "capacity": big, "window_seconds": 60},
    {"key": "global:llm:bench:bench-1:concurrency", "kind": "concurrency", "capacity": 10**9, "timeout_seconds": 60},
]
limits += [{"key": f"tenant:t{i:04}:llm:daily_tokens", "kind": "rolling", "capacity": 10**6,
            "window_seconds": 86400} for i in range(int(sys.argv[1]))]
print(json.dumps(limits))
EOF

RUST_LOG=warn "$BIN_DIR/ratelimiterd" --listen "127.0.0.1:$PORT" --registry "$WORK/registry.json" \
    --limits "$WORK/limits.json" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 500); do
    curl -sf -o /dev/null "$URL/readyz" && break
    sleep 0.02
done
curl -sf -o /dev/null "$URL/readyz" || { echo "metrics-bench: ratelimiterd did not start" >&2; exit 1; }
series="$(curl -sf "$URL/metrics" | grep -c '^ratelimiter_limit_capacity{')"
echo "== $((KEYS + 3)) limits defined ($series capacity series per scrape); $ROUNDS pairs of $DURATION rounds, concurrency $CONCURRENCY"

# Prints the reserves/s and the reserve p99 (ms) of one load round.
load() {
    "$BIN_DIR/ratelimiter-loadtest" --mode http --url "$URL" --limits "$WORK/limits.json" \
        --duration "$DURATION" --concurrency "$CONCURRENCY" 2>/dev/null >"$WORK/round.txt"
    echo "$(sed -n 's/^reserves:.* (\([0-9.]*\)\/s).*/\1/p' "$WORK/round.txt")" \
        "$(sed -n 's/^reserve latency ms:.* p99 \([0-9.]*\).*/\1/p' "$WORK/round.txt")"
}

# Scrapes about 10 times a second until killed; one line per scrape: seconds, bytes.
scrape_loop() {
    while :; do
        curl -sf -o /dev/null -w '%{time_total} %{size_download}\n' "$URL${SCRAPE_PATH:-/metrics}" || echo "failed 0"
        sleep 0.1
    done
}

# CPU time (ms) the server has used so far.
server_cpu() {
    awk -v tck="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / tck)}' "/proc/$SERVER_PID/stat"
}

ref_sum=0
scr_sum=0
for round in $(seq "$ROUNDS"); do
    cpu0="$(server_cpu)"
    read -r ref ref_p99 < <(load)
    cpu1="$(server_cpu)"
    scrape_loop >>"$WORK/scrapes.txt" &
    SCRAPER_PID=$!
    started="$(date +%s.%N)"
    read -r scr scr_p99 < <(load)
    kill "$SCRAPER_PID"
    wait "$SCRAPER_PID" 2>/dev/null || true
    SCRAPER_PID=""
    cpu2="$(server_cpu)"
    elapsed="$(python3 -c "import time; print(time.time() - $started)")"
    echo "round $round: reference $ref reserves/s (p99 $ref_p99 ms, server CPU $((cpu1 - cpu0)) ms)," \
        "with scrapes $scr reserves/s (p99 $scr_p99 ms, server CPU $((cpu2 - cpu1)) ms; scraping for ${elapsed%.*} s)"
    ref_sum="$(python3 -c "print($ref_sum + $ref)")"
    scr_sum="$(python3 -c "print($scr_sum + $scr)")"
done

python3 - "$WORK/scrapes.txt" "$ref_sum" "$scr_sum" "$ROUNDS" "$DURATION" <<'EOF'
import statistics, sys
path, ref, scr, rounds, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = [line.split() for line in open(path)]
failed = sum(1 for r in rows if r[0] == "failed")
ok = [(float(t), int(b)) for t, b in rows if t != "failed"]
seconds = rounds * float(duration.rstrip("s"))
print(f"mean reserves/s: reference {ref / rounds:.0f}, with scrapes {scr / rounds:.0f}, ratio {scr / ref:.3f}")
print(f"scrapes: {len(ok)} ok, {failed} failed, ~{len(ok) / seconds:.1f}/s; "
      f"median {statistics.median(t for t, _ in ok) * 1000:.1f} ms, "
      f"{statistics.median(b for _, b in ok) / 1024:.0f} KiB each")
EOF
