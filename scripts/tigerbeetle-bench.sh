#!/usr/bin/env bash
# TigerBeetle throughput against `tigerbeetle benchmark` in one run (BENCHMARKS.md, "Issue
# #11: TigerBeetle throughput"). Starts one TigerBeetle server (127.0.0.1, a fresh data
# file; with --fresh-server a new one for each step) and measures, in this order:
#   1. raw:        `tigerbeetle benchmark --addresses=<it> --transfer-pending` (pending
#                  transfers, like reserves; the largest batch the server takes)
#   2. in process: benches/tigerbeetle/in_process.rs, CALLERS concurrent callers reserving
#                  four keys each through LimiterService + TigerBeetleBackend
#   3. HTTP:       ratelimiterd --backend tigerbeetle loaded by wrk with
#                  benches/tigerbeetle/reserve_batch.lua: POST /v1/reserve/batch, 32 reserves
#                  of four keys per request
#   4. raw again
# and prints transfers/s of each (a reserve of four keys = four transfers) and the ratio of
# 2 and 3 to the mean of 1 and 4. Release build; every step is bounded by `timeout`; every
# process it started is stopped on exit.
#
# A TigerBeetle server slows down as its data file fills (a production server took 1 M
# pending transfers at ~230 k/s fresh and at ~100-120 k/s after ~4 M), so on one shared
# server whichever step runs later is measured against a slower server. --fresh-server
# gives every step its own freshly formatted server instead (same flags, same address
# kind), so each step meets the same empty server; the raw reference is still the mean of
# runs 1 and 4.
#
# Usage: scripts/tigerbeetle-bench.sh [--development] [--fresh-server] [--duration SECS]
#                                     [--sessions N] [--callers N] [--connections N]
#                                     [--raw-transfers N]
#   --development    run the server with --development (smaller batches: 253 events), as
#                    the tests do; default: a production server (8189 events per request)
#   --fresh-server   a freshly formatted server for each step (default: one for all four)
#   --duration       seconds of each of steps 2 and 3 (default 10)
#   --sessions       tigerbeetle.sessions of the backend (default 4)
#   --callers        concurrent callers of step 2 (default 1024)
#   --connections    wrk connections of step 3 (default 64; 1 wrk thread)
#   --raw-transfers  transfers of each raw run (default 2000000)
set -euo pipefail

log() { printf '[tigerbeetle-bench] %s\n' "$*" >&2; }
die() { printf '[tigerbeetle-bench] ERROR: %s\n' "$*" >&2; exit 1; }

root="$(cd "$(dirname "$0")/.." && pwd)"
development=0
fresh_server=0
duration=10
sessions=4
callers=1024
connections=64
raw_transfers=2000000
while [ $# -gt 0 ]; do
    case "$1" in
        --development) development=1; shift ;;
        --fresh-server) fresh_server=1; shift ;;
        --duration) duration="${2:?--duration needs seconds}"; shift 2 ;;
        --sessions) sessions="${2:?--sessions needs a number}"; shift 2 ;;
        --callers) callers="${2:?--callers needs a number}"; shift 2 ;;
        --connections) connections="${2:?--connections needs a number}"; shift 2 ;;
        --raw-transfers) raw_transfers="${2:?--raw-transfers needs a number}"; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
command -v wrk >/dev/null 2>&1 || die "wrk is missing (apt-get install wrk)"
TB="${TB_BIN:-$("$root/scripts/provision-tigerbeetle.sh")}"
[ -x "$TB" ] || die "no TigerBeetle binary at $TB"

log "building release binaries..."
(cd "$root" && timeout 3600 cargo build --release --features tigerbeetle --bin ratelimiterd \
    --example tigerbeetle_in_process >&2)
daemon="$root/target/release/ratelimiterd"
in_process="$root/target/release/examples/tigerbeetle_in_process"

scratch="$(mktemp -d)"
# A production server's data file grows by gigabytes a minute under this load (13 GB seen
# in one run): refuse to start rather than fill the disk.
need_gb=$([ "$development" = 1 ] && echo 4 || echo 24)
free_gb=$(( $(df -Pk "$scratch" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
if [ "$free_gb" -lt "$need_gb" ]; then
    rmdir "$scratch"
    die "only ${free_gb} GB free under $(dirname "$scratch"); this run needs about ${need_gb} GB for the TigerBeetle data file (set TMPDIR to a larger disk)"
fi
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

dev_flag=()
batch_flags=()
max_events=8189
if [ "$development" = 1 ]; then
    dev_flag=(--development)
    batch_flags=(--transfer-batch-count=253 --account-batch-count=253)
    max_events=253
fi
# Formats a fresh data file and starts a server on it; sets address and tb_pid.
start_server() {
    local data="$scratch/0_0.tigerbeetle"
    rm -f "$data"
    address="127.0.0.1:$(free_port)"
    timeout 120 "$TB" format --cluster=0 --replica=0 --replica-count=1 "${dev_flag[@]}" \
        "$data" >"$scratch/format.log" 2>&1 || die "format failed: $(cat "$scratch/format.log")"
    "$TB" start --addresses="$address" "${dev_flag[@]}" "$data" >"$scratch/tb.log" 2>&1 &
    tb_pid=$!
    pids+=("$tb_pid")
    for _ in $(seq 1 600); do
        grep -q "listening on" "$scratch/tb.log" && break
        sleep 0.1
    done
    grep -q "listening on" "$scratch/tb.log" || die "TigerBeetle did not listen within 60 s: $(tail -5 "$scratch/tb.log")"
    log "TigerBeetle $([ "$development" = 1 ] && echo --development || echo production) at $address (fresh data file)"
}

# Stops the server and frees its data file.
stop_server() {
    kill "$tb_pid" 2>/dev/null || true
    wait "$tb_pid" 2>/dev/null || true
    rm -f "$scratch/0_0.tigerbeetle"
}

# Before a step after the first: a fresh server with --fresh-server, else the same one.
next_step() {
    if [ "$fresh_server" = 1 ]; then
        stop_server
        start_server
    fi
}

start_server

# One raw run; prints transfers/s.
raw() {
    local out
    out="$(timeout 600 "$TB" benchmark --addresses="$address" --transfer-count="$raw_transfers" \
        --transfer-pending --id-order=tbid --query-count=0 "${batch_flags[@]}" 2>&1)" \
        || die "tigerbeetle benchmark failed: $(tail -5 <<<"$out")"
    awk '/^load accepted =/ { print $4 }' <<<"$out"
}

log "load: $(cut -d' ' -f1-3 /proc/loadavg) before the run"
log "1/4 raw tigerbeetle benchmark ($raw_transfers pending transfers)..."
raw1="$(raw)"

next_step
log "2/4 in process: $callers callers, ${duration}s, sessions $sessions..."
line="$(timeout $((duration + 120)) "$in_process" "$address" "$duration" "$callers" "$sessions" "$max_events")" \
    || die "in-process run failed"
log "    $line"
in_proc="$(sed -n 's/.*transfers_per_s=\([0-9]*\).*/\1/p' <<<"$line")"

next_step
log "3/4 HTTP: wrk -t1 -c$connections -d${duration}s, POST /v1/reserve/batch of 32..."
port="$(free_port)"
RUST_LOG=warn RATELIMITERD_TIGERBEETLE__BATCH_MAX_EVENTS="$max_events" "$daemon" \
    --listen "127.0.0.1:$port" --backend tigerbeetle --tb-addresses "$address" \
    --tb-sessions "$sessions" --registry "$scratch/registry.json" \
    --limits "$root/benches/http/limits.json" --lease-capacity 8000000 \
    >"$scratch/daemon.log" 2>&1 &
daemon_pid=$!
pids+=("$daemon_pid")
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || die "ratelimiterd exited: $(tail -5 "$scratch/daemon.log")"
    sleep 0.1
done
out="$(BATCH=32 timeout $((duration + 60)) wrk -t1 -c"$connections" -d"${duration}s" --latency \
    -s "$root/benches/tigerbeetle/reserve_batch.lua" "http://127.0.0.1:$port/v1/reserve/batch")"
errors="$(awk '/^non_2xx_or_errors:/ { print $2 }' <<<"$out")"
[ "${errors:-0}" = 0 ] || die "$errors requests not answered 200 with every reserve allowed; wrk said: $out"
http_rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
http="$(awk -v r="$http_rps" 'BEGIN { printf "%.0f", r * 32 * 4 }')"
log "    $(grep -E 'Latency  |Requests/sec' <<<"$out" | tr -s ' ' | tr '\n' ';')"
kill "$daemon_pid" 2>/dev/null || true
wait "$daemon_pid" 2>/dev/null || true

next_step
log "4/4 raw tigerbeetle benchmark again..."
raw2="$(raw)"
log "load: $(cut -d' ' -f1-3 /proc/loadavg) after the run"

raw_mean="$(awk -v a="$raw1" -v b="$raw2" 'BEGIN { printf "%.0f", (a + b) / 2 }')"
printf '%-36s %14s %7s\n' "measure" "transfers/s" "ratio"
printf '%-36s %14s %7s\n' "raw tigerbeetle benchmark (1st)" "$raw1" ""
printf '%-36s %14s %7s\n' "raw tigerbeetle benchmark (2nd)" "$raw2" ""
printf '%-36s %14s %7s\n' "raw mean (reference)" "$raw_mean" "1.00"
printf '%-36s %14s %7s\n' "in process, $callers callers" "$in_proc" \
    "$(awk -v o="$in_proc" -v r="$raw_mean" 'BEGIN { printf "%.2f", o / r }')"
printf '%-36s %14s %7s\n' "HTTP, /v1/reserve/batch of 32" "$http" \
    "$(awk -v o="$http" -v r="$raw_mean" 'BEGIN { printf "%.2f", o / r }')"
