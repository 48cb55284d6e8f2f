#!/usr/bin/env bash
# Metrics benchmark: does scraping GET /metrics slow the hot path? One release ratelimiterd
# (memory backend) holds the load-test limits plus KEYS more (every scrape reports all of
# them); ratelimiter-loadtest runs ROUNDS rounds of three kinds against it, all in one run:
# `reference` (no scrapes), `healthz` (a client polling /healthz 10 times a second: the cost
# of the polling itself on this machine) and `metrics` (the same client scraping /metrics 10
# times a second). Prints every round, then per kind the mean reserves/s and its ratio to the
# reference, the median p99, the server's CPU time, and the scrapes' count, size and time.
#
# Every step is bounded (load durations, polling loops with a fixed number of tries), and
# every process started here is stopped on exit.
#
# Usage: scripts/metrics-bench.sh [BIN_DIR] [DURATION] [ROUNDS] [KEYS]
#   BIN_DIR   directory holding ratelimiterd and ratelimiter-loadtest (default: target/release)
#   DURATION  length of each load round (default: 5s)
#   ROUNDS    rounds of each kind (default: 3)
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
echo "== $((KEYS + 3)) limits defined ($series capacity series per scrape); $ROUNDS rounds of each kind, $DURATION each, concurrency $CONCURRENCY"
echo "kind reserves/s p99_ms server_cpu_ms"

# Prints the reserves/s and the reserve p99 (ms) of one load round.
load() {
    "$BIN_DIR/ratelimiter-loadtest" --mode http --url "$URL" --limits "$WORK/limits.json" \
        --duration "$DURATION" --concurrency "$CONCURRENCY" 2>/dev/null >"$WORK/round.txt"
    echo "$(sed -n 's/^reserves:.* (\([0-9.]*\)\/s).*/\1/p' "$WORK/round.txt")" \
        "$(sed -n 's/^reserve latency ms:.* p99 \([0-9.]*\).*/\1/p' "$WORK/round.txt")"
}

# Polls PATH 10 times a second (paced by the clock, one keep-alive connection) until
# killed; appends one line per request to FILE: seconds, bytes.
poll_loop() {
    exec python3 -u - "$URL$1" "$2" <<'EOF'
import http.client, sys, time, urllib.parse
url, out = urllib.parse.urlsplit(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
due = time.monotonic()
while True:
    started = time.monotonic()
    try:
        conn.request("GET", url.path)
        response = conn.getresponse()
        body = response.read()
        out.write(f"{time.monotonic() - started} {len(body)}\n" if response.status == 200 else "failed 0\n")
    except OSError:
        conn.close()
        out.write("failed 0\n")
    due += 0.1
    time.sleep(max(0.0, due - time.monotonic()))
EOF
}

# CPU time (ms) the server has used so far.
server_cpu() {
    awk -v tck="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / tck)}' "/proc/$SERVER_PID/stat"
}

# One round of KIND: `reference` (no polling), `healthz` (the same polling loop on
# /healthz: what the polling itself costs) or `metrics` (scrapes). Appends
# "kind reserves/s p99_ms server_cpu_ms" to results.txt.
round() {
    local kind="$1" cpu0 rate p99
    cpu0="$(server_cpu)"
    case "$kind" in
        healthz) poll_loop /healthz "$WORK/healthz.txt" & SCRAPER_PID=$! ;;
        metrics) poll_loop /metrics "$WORK/scrapes.txt" & SCRAPER_PID=$! ;;
    esac
    read -r rate p99 < <(load)
    if [ -n "$SCRAPER_PID" ]; then
        kill "$SCRAPER_PID"
        wait "$SCRAPER_PID" 2>/dev/null || true
        SCRAPER_PID=""
    fi
    echo "$kind $rate $p99 $(( $(server_cpu) - cpu0 ))" | tee -a "$WORK/results.txt"
}

# The server's CPU per request while idle, 50 requests each: what one scrape costs, next to
# the admin list it reads (the same usage reads) and /healthz.
for path in /healthz /v1/admin/limits /metrics; do
    cpu0="$(server_cpu)"
    for _ in $(seq 50); do curl -sf -o /dev/null "$URL$path"; done
    echo "idle: GET $path costs $(( ($(server_cpu) - cpu0) * 1000 / 50 )) µs of server CPU"
done

# The order of the three kinds rotates every round, so drift on a shared machine hits each
# kind alike.
for r in $(seq "$ROUNDS"); do
    case $(( r % 3 )) in
        1) order="reference healthz metrics" ;;
        2) order="metrics reference healthz" ;;
        0) order="healthz metrics reference" ;;
    esac
    for kind in $order; do
        round "$kind"
    done
done

python3 - "$WORK" "$ROUNDS" "$DURATION" <<'EOF'
import statistics, sys
work, rounds, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [line.split() for line in open(f"{work}/results.txt")]
def column(kind, i):
    return [float(r[i]) for r in rows if r[0] == kind]
seconds = rounds * float(duration.rstrip("s"))
# Server CPU per reserve (with its complete), in µs: the hot path's cost, which shared-machine
# noise moves far less than throughput.
def cpu_per_reserve(kind):
    return sum(column(kind, 3)) * 1000 / (sum(column(kind, 1)) * float(duration.rstrip("s")))
ref_rate, ref_cpu = statistics.mean(column("reference", 1)), cpu_per_reserve("reference")
for kind in ("reference", "healthz", "metrics"):
    rates, p99s = column(kind, 1), column(kind, 2)
    print(f"{kind:9}: mean {statistics.mean(rates):6.0f} reserves/s (ratio {statistics.mean(rates) / ref_rate:.3f}), "
          f"median p99 {statistics.median(p99s):5.2f} ms, server CPU {cpu_per_reserve(kind):5.1f} µs "
          f"per reserve (ratio {cpu_per_reserve(kind) / ref_cpu:.3f})")
for name, path in (("healthz polls", "healthz.txt"), ("scrapes", "scrapes.txt")):
    rows = [line.split() for line in open(f"{work}/{path}")]
    ok = [(float(t), int(b)) for t, b in rows if t != "failed"]
    print(f"{name}: {len(ok)} ok, {len(rows) - len(ok)} failed, ~{len(ok) / seconds:.1f}/s; "
          f"median {statistics.median(t for t, _ in ok) * 1000:.1f} ms, "
          f"{statistics.median(b for _, b in ok) / 1024:.0f} KiB each")
EOF
