#!/usr/bin/env bash
# Provision the headless browser that the limits page's browser test drives: Debian's
# `chromium` package (plus fonts-liberation, so text renders the same everywhere), from apt.
#
# Prints the absolute path of the browser on stdout and nothing else; logs go to stderr.
# Idempotent and quiet when the browser is already there; safe to run concurrently (flock).
# Installs as root, or through `sudo -n` when not root.
#
# Environment:
#   CHROMIUM_BIN   if set, must be an existing executable; it is printed and nothing is
#                  installed (the test reads the same variable).
#
# Usage: CHROMIUM_BIN="$(scripts/provision-chromium.sh)" && "$CHROMIUM_BIN" --version
set -euo pipefail

DEFAULT_BIN="/usr/bin/chromium"
PACKAGES=(chromium fonts-liberation)

log() { printf '[provision-chromium] %s\n' "$*" >&2; }
die() { printf '[provision-chromium] ERROR: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
    case "$arg" in
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 0 ;;
        *) die "unknown argument: $arg (see --help)" ;;
    esac
done

# A browser that starts and names itself (the Debian wrapper may print shell noise on stderr).
browser_ok() {
    [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -q '^Chromium '
}

# 0. An explicitly provided browser wins.
if [[ -n "${CHROMIUM_BIN:-}" ]]; then
    [[ -f "$CHROMIUM_BIN" && -x "$CHROMIUM_BIN" ]] ||
        die "CHROMIUM_BIN is set to '$CHROMIUM_BIN', which is not an existing executable file (unset it to install Debian's chromium)"
    printf '%s\n' "$CHROMIUM_BIN"
    exit 0
fi

# 1. Fast path: already installed.
if browser_ok "$DEFAULT_BIN"; then
    printf '%s\n' "$DEFAULT_BIN"
    exit 0
fi

# 2. Install from apt, as root or through sudo.
command -v apt-get >/dev/null 2>&1 ||
    die "apt-get not found: install Chromium yourself and set CHROMIUM_BIN to it"
if [[ "$(id -u)" == "0" ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    die "installing ${PACKAGES[*]} needs root (or password-less sudo); or set CHROMIUM_BIN"
fi

lock_dir="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ratelimiter"
mkdir -p "$lock_dir"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$lock_dir/.provision-chromium.lock"
    flock 9
    # Another process may have finished the install while we waited.
    if browser_ok "$DEFAULT_BIN"; then
        printf '%s\n' "$DEFAULT_BIN"
        exit 0
    fi
fi

log "installing ${PACKAGES[*]} from apt (first run only, under a minute)..."
export DEBIAN_FRONTEND=noninteractive
apt_log="$(mktemp)"
trap 'rm -f "$apt_log"' EXIT
# apt's progress goes to a log that is shown only when a step fails.
apt_step() {
    "${as_root[@]}" "$@" >"$apt_log" 2>&1 || { cat "$apt_log" >&2; die "'$*' failed"; }
}
apt_step apt-get update -q
apt_step apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

browser_ok "$DEFAULT_BIN" ||
    die "$DEFAULT_BIN does not run after installing ${PACKAGES[*]}: $("$DEFAULT_BIN" --version 2>&1 | tail -2)"
log "$("$DEFAULT_BIN" --version 2>/dev/null) at $DEFAULT_BIN"
printf '%s\n' "$DEFAULT_BIN"
