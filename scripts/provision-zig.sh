#!/usr/bin/env bash
# Provision the toolchain needed to build the `tigerbeetle-unofficial` Rust crate
# (whose `tigerbeetle-unofficial-sys` build script compiles TigerBeetle's C client
# with Zig and then runs bindgen):
#
#   * Zig 0.14.1, installed from PyPI (`ziglang==0.14.1`) into a cache dir outside
#     the repo: ${RATELIMITER_CACHE:-~/.cache/ratelimiter}/ziglang-0.14.1
#   * libclang (Debian `libclang-dev`, needed by bindgen), installed with apt-get
#     only when missing. Skip with `--no-libclang` or PROVISION_SKIP_LIBCLANG=1.
#
# Idempotent: a second run only checks and takes milliseconds.
# Prints the absolute path of the zig executable on stdout and nothing else;
# all logs go to stderr.
#
# Usage: scripts/provision-zig.sh [--no-libclang]
set -euo pipefail

ZIG_VERSION="0.14.1"

log() { printf '[provision-zig] %s\n' "$*" >&2; }
die() { printf '[provision-zig] ERROR: %s\n' "$*" >&2; exit 1; }

want_libclang=1
[[ "${PROVISION_SKIP_LIBCLANG:-0}" == "1" ]] && want_libclang=0
for arg in "$@"; do
    case "$arg" in
        --no-libclang) want_libclang=0 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

if [[ -z "${HOME:-}" && -z "${RATELIMITER_CACHE:-}" && -z "${XDG_CACHE_HOME:-}" ]]; then
    die "neither HOME, XDG_CACHE_HOME nor RATELIMITER_CACHE is set; cannot pick a cache dir"
fi
CACHE_ROOT="${RATELIMITER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ratelimiter}"
ZIG_DIR="$CACHE_ROOT/ziglang-$ZIG_VERSION"
ZIG_BIN="$ZIG_DIR/ziglang/zig"

# Run a command as root (directly, or via sudo when available).
as_root() {
    if [[ "$(id -u)" == "0" ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or passwordless sudo) to run: $*"
    fi
}

zig_ok() {
    [[ -x "$ZIG_BIN" ]] && [[ "$("$ZIG_BIN" version 2>/dev/null)" == "$ZIG_VERSION" ]]
}

libclang_ok() {
    # An explicit LIBCLANG_PATH (honoured by bindgen/clang-sys) means the user manages it.
    if [[ -n "${LIBCLANG_PATH:-}" ]]; then
        return 0
    fi
    if command -v dpkg-query >/dev/null 2>&1; then
        [[ "$(dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null)" == "install ok installed" ]]
    else
        # Non-Debian: accept any libclang shared library in the usual places.
        compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
            compgen -G '/usr/lib*/libclang.so*' >/dev/null ||
            compgen -G '/usr/lib/*/libclang.so*' >/dev/null
    fi
}

# Fast path: everything is there already.
if zig_ok && { [[ "$want_libclang" == "0" ]] || libclang_ok; }; then
    printf '%s\n' "$ZIG_BIN"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
# Serialise concurrent provisioning (e.g. a cargo build script and a test script).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_ROOT/.provision-zig.lock"
    flock 9
fi

install_libclang() {
    libclang_ok && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "libclang is missing and apt-get is unavailable; install libclang (>= 9) or set LIBCLANG_PATH"
    log "installing libclang-dev with apt-get (needed by bindgen in tigerbeetle-unofficial-sys)..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
        die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libclang-dev >&2 ||
        die "apt-get install libclang-dev failed"
    libclang_ok || die "libclang-dev still not installed after apt-get install"
    log "libclang-dev installed"
}

find_python() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    return 1
}

install_zig() {
    zig_ok && return 0
    local py
    if ! py="$(find_python)"; then
        if command -v apt-get >/dev/null 2>&1; then
            log "no python with pip found; installing python3-pip with apt-get..."
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >&2 ||
                die "apt-get install python3-pip failed"
        fi
        py="$(find_python)" || die "need python3 with pip to install ziglang==$ZIG_VERSION from PyPI"
    fi
    log "installing ziglang==$ZIG_VERSION from PyPI into $ZIG_DIR (using $(command -v "$py"))..."
    local tmp="$ZIG_DIR.tmp.$$"
    rm -rf "$tmp"
    # --target bypasses PEP 668 "externally managed" checks and keeps it out of any env.
    if ! PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --no-deps --target "$tmp" "ziglang==$ZIG_VERSION" >&2; then
        rm -rf "$tmp"
        die "pip install ziglang==$ZIG_VERSION failed (is PyPI reachable? is there a wheel for $(uname -m)?)"
    fi
    [[ -x "$tmp/ziglang/zig" ]] || { rm -rf "$tmp"; die "ziglang wheel has no executable ziglang/zig"; }
    rm -rf "$ZIG_DIR"
    mv "$tmp" "$ZIG_DIR"
    zig_ok || die "installed $ZIG_BIN but '$ZIG_BIN version' does not print $ZIG_VERSION"
    log "zig $ZIG_VERSION ready at $ZIG_BIN"
}

install_zig
if [[ "$want_libclang" == "1" ]]; then
    install_libclang
fi

printf '%s\n' "$ZIG_BIN"
