#!/usr/bin/env bash
# The HTTP ceiling benchmark of POST /v1/reserve (BENCHMARKS.md, "HTTP reserve against a
# bare actix-web server"): ratelimiterd (memory backend) against a bare actix-web server
# that only parses the same JSON body and answers a fixed reply (benches/http/ceiling.rs),
# both loaded by wrk with identical settings and a fresh ULID per request
# (benches/http/reserve.lua), in alternating pairs. Prints each run's req/s and the ratio
# ratelimiterd / ceiling.
#
# Installs wrk with apt-get when missing (as root, or via passwordless sudo), builds the
# release binaries, listens on 127.0.0.1 only and stops every server it started.
#
# Usage: benches/http/run.sh [--memory-arbiters N]... [--duration SECS] [--pairs N]
#                            [--workers N] [--connections N] [--snapshot-interval-ms MS]
#   --memory-arbiters  may be given several times: one series of pairs per value
#                      (default: ratelimiterd's default, one per core)
#   --duration         seconds per wrk run (default 10)
#   --pairs            ratelimiterd/ceiling pairs per series (default 3)
#   --workers          HTTP workers of both servers (default: one per core)
#   --connections      wrk connections (default 32; always 1 wrk thread)
#   --snapshot-interval-ms  passed to ratelimiterd (default: its default, 1000)
set -euo pipefail

log() { printf '[bench-http] %s\n' "$*" >&2; }
die() { printf '[bench-http] ERROR: %s\n' "$*" >&2; exit 1; }

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/benches/http"
duration=10
pairs=3
workers="$(nproc)"
connections=32
arbiters=()
snapshot=()
while [ $# -gt 0 ]; do
    case "$1" in
        --memory-arbiters) arbiters+=("${2:?--memory-arbiters needs a number}"); shift 2 ;;
        --duration) duration="${2:?--duration needs seconds}"; shift 2 ;;
        --pairs) pairs="${2:?--pairs needs a number}"; shift 2 ;;
        --workers) workers="${2:?--workers needs a number}"; shift 2 ;;
        --connections) connections="${2:?--connections needs a number}"; shift 2 ;;
        --snapshot-interval-ms) snapshot=(--snapshot-interval-ms "${2:?--snapshot-interval-ms needs ms}"); shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[ ${#arbiters[@]} -gt 0 ] || arbiters=(default)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else die "need root (or passwordless sudo) to run: $*"
    fi
}

if ! command -v wrk >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "wrk is missing and apt-get is unavailable; install wrk"
    log "installing wrk with apt-get..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 || die "apt-get install wrk failed"
fi

log "building release binaries..."
(cd "$root" && cargo build --release --bin ratelimiterd --example http_ceiling >&2)
daemon="$root/target/release/ratelimiterd"
ceiling="$root/target/release/examples/http_ceiling"

scratch="$(mktemp -d)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$scratch"' EXIT

port=18190
wait_listening() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || die "server exited early (log: $scratch/server.log)"
        sleep 0.1
    done
    die "server did not listen on 127.0.0.1:$port within 10 s"
}

# Starts one server on a fresh port (a fresh daemon and a fresh registry and reservation
# snapshot per run: the leases of one run, never completed, do not weigh on the next).
start_daemon() {
    port=$((port + 1))
    local extra=()
    [ "$1" = default ] || extra=(--memory-arbiters "$1")
    rm -f "$scratch/registry.json" "$scratch/registry.reservations.json"
    RUST_LOG=warn "$daemon" --listen "127.0.0.1:$port" --backend memory \
        --registry "$scratch/registry.json" --limits "$here/limits.json" \
        --workers "$workers" --lease-capacity 4000000 "${extra[@]}" "${snapshot[@]}" \
        >"$scratch/server.log" 2>&1 &
    server_pid=$!
    wait_listening
}
start_ceiling() {
    port=$((port + 1))
    "$ceiling" "127.0.0.1:$port" "$workers" >"$scratch/server.log" 2>&1 &
    server_pid=$!
    wait_listening
}

# One wrk run against the server on $port; prints req/s.
load() {
    local out
    out="$(timeout $((duration + 30)) wrk -t1 -c"$connections" -d"${duration}s" --latency \
        -s "$here/reserve.lua" "http://127.0.0.1:$port/v1/reserve")"
    printf '%s\n' "$out" >"$scratch/wrk.out"
    local errors
    errors="$(awk '/^non_2xx_or_errors:/ { print $2 }' <<<"$out")"
    [ "${errors:-0}" = 0 ] || die "$errors non-200 answers or socket errors; wrk said: $out"
    awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out"
}

log "wrk -t1 -c$connections -d${duration}s, $workers HTTP workers per server, $pairs pairs per series ${snapshot[*]}"
printf '%-10s %-5s %14s %14s %7s\n' arbiters pair ratelimiterd ceiling ratio
for arb in "${arbiters[@]}"; do
    sum_d=0; sum_c=0
    for pair in $(seq 1 "$pairs"); do
        # Alternate which server goes first, so a drift in the machine's load biases neither.
        if [ $((pair % 2)) = 1 ]; then
            start_daemon "$arb"; d="$(load)"; stop_server
            start_ceiling; c="$(load)"; stop_server
        else
            start_ceiling; c="$(load)"; stop_server
            start_daemon "$arb"; d="$(load)"; stop_server
        fi
        sum_d=$((sum_d + d)); sum_c=$((sum_c + c))
        printf '%-10s %-5s %14s %14s %7s\n' "$arb" "$pair" "$d" "$c" \
            "$(awk -v d="$d" -v c="$c" 'BEGIN { printf "%.2f", d / c }')"
    done
    printf '%-10s %-5s %14s %14s %7s\n' "$arb" mean "$((sum_d / pairs))" "$((sum_c / pairs))" \
        "$(awk -v d="$sum_d" -v c="$sum_c" 'BEGIN { printf "%.2f", d / c }')"
done
