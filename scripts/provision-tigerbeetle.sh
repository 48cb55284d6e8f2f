#!/usr/bin/env bash
# Provision everything TigerBeetle-related that this project needs, from package
# registries only (crates.io, PyPI, Debian apt):
#
#   1. libclang-dev + Zig 0.14.1 (via scripts/provision-zig.sh). These are also what
#      `cargo build` of tigerbeetle-unofficial needs (ZIG_PATH -> scripts/zig).
#   2. The TigerBeetle 0.16.78 server binary, built from the TigerBeetle source that
#      ships inside the `tigerbeetle-unofficial-sys` crate (=0.14.28+0.16.78), and
#      cached at ${RATELIMITER_CACHE:-~/.cache/ratelimiter}/tigerbeetle-0.16.78/tigerbeetle.
#      First run: ~4-5 min on 2 cores. Later runs: well under a second.
#
# Prints the absolute path of the server binary on stdout and nothing else; logs go
# to stderr. Idempotent and safe to run concurrently (flock).
#
# Environment:
#   TB_BIN              if set, must be an existing executable; it is printed and
#                       nothing is built (Zig/libclang are still provisioned unless
#                       TB_SKIP_TOOLCHAIN=1).
#   RATELIMITER_CACHE   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/ratelimiter).
#   TB_SYS_SRC          use this tigerbeetle-unofficial-sys source dir instead of
#                       looking it up in the cargo registry.
#   TB_KEEP_BUILD_DIR=1 keep the scratch build dir (default: removed after success).
#   TB_SKIP_TOOLCHAIN=1 with TB_BIN: do not provision Zig/libclang.
#
# Usage: TB="$(scripts/provision-tigerbeetle.sh)" && "$TB" version
set -euo pipefail

TB_VERSION="0.16.78"
TB_COMMIT="c3d9b09dc88e94dde9ac915c6e94a4c650332080"
SYS_CRATE="tigerbeetle-unofficial-sys"
SYS_VERSION="0.14.28+$TB_VERSION"

log() { printf '[provision-tigerbeetle] %s\n' "$*" >&2; }
die() { printf '[provision-tigerbeetle] ERROR: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
    case "$arg" in
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 0 ;;
        *) die "unknown argument: $arg (see --help)" ;;
    esac
done

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -z "${HOME:-}" && -z "${RATELIMITER_CACHE:-}" && -z "${XDG_CACHE_HOME:-}" ]]; then
    die "neither HOME, XDG_CACHE_HOME nor RATELIMITER_CACHE is set; cannot pick a cache dir"
fi
CACHE_ROOT="${RATELIMITER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ratelimiter}"
OUT_DIR="$CACHE_ROOT/tigerbeetle-$TB_VERSION"
OUT_BIN="$OUT_DIR/tigerbeetle"
BUILD_DIR="$CACHE_ROOT/build-tigerbeetle-$TB_VERSION"

# 0. An explicitly provided server binary wins.
if [[ -n "${TB_BIN:-}" ]]; then
    [[ -f "$TB_BIN" && -x "$TB_BIN" ]] ||
        die "TB_BIN is set to '$TB_BIN', which is not an existing executable file (unset it to build/cache one)"
    if [[ "${TB_SKIP_TOOLCHAIN:-0}" != "1" ]]; then
        "$SCRIPTS_DIR/provision-zig.sh" >/dev/null
    fi
    log "using TB_BIN=$TB_BIN"
    printf '%s\n' "$(cd "$(dirname "$TB_BIN")" && pwd)/$(basename "$TB_BIN")"
    exit 0
fi

# 1. Toolchain: Zig (PyPI) + libclang (apt). Needed for the server build below and
#    for `cargo build` of tigerbeetle-unofficial.
ZIG="$("$SCRIPTS_DIR/provision-zig.sh")" || die "provisioning Zig/libclang failed"

server_ok() {
    local out
    [[ -x "$1" ]] || return 1
    out="$("$1" version 2>/dev/null)" || return 1
    [[ "$out" == *"version $TB_VERSION+"* ]]
}

# 2. Fast path: cached server binary.
if server_ok "$OUT_BIN"; then
    printf '%s\n' "$OUT_BIN"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_ROOT/.provision-tigerbeetle.lock"
    flock 9
    # Another process may have finished the build while we waited.
    if server_ok "$OUT_BIN"; then
        printf '%s\n' "$OUT_BIN"
        exit 0
    fi
fi

# Locate the pristine tigerbeetle-unofficial-sys source (it vendors TigerBeetle).
find_sys_src() {
    local dir
    if [[ -n "${TB_SYS_SRC:-}" ]]; then
        [[ -d "$TB_SYS_SRC/tigerbeetle" ]] || die "TB_SYS_SRC='$TB_SYS_SRC' has no tigerbeetle/ dir"
        printf '%s\n' "$TB_SYS_SRC"
        return 0
    fi
    local cargo_home="${CARGO_HOME:-$HOME/.cargo}"
    for dir in "$cargo_home"/registry/src/*/"$SYS_CRATE-$SYS_VERSION"; do
        if [[ -d "$dir/tigerbeetle" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    # Not downloaded yet: let cargo fetch it from crates.io via a throwaway manifest
    # (works whether or not the repo's own Cargo.toml depends on it yet).
    command -v cargo >/dev/null 2>&1 || die "cargo not found; needed to fetch $SYS_CRATE=$SYS_VERSION from crates.io"
    local tmp
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/src"
    : >"$tmp/src/lib.rs"
    cat >"$tmp/Cargo.toml" <<EOF
[package]
name = "tb-sys-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$SYS_CRATE = "=$SYS_VERSION"
EOF
    log "fetching $SYS_CRATE=$SYS_VERSION from crates.io..."
    local manifest
    manifest="$(cargo metadata --format-version 1 --manifest-path "$tmp/Cargo.toml" 2>/dev/null |
        python3 -c '
import json, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p["name"] == sys.argv[1] and p["version"] == sys.argv[2]:
        print(p["manifest_path"])
        break
' "$SYS_CRATE" "$SYS_VERSION")" || true
    rm -rf "$tmp"
    [[ -n "$manifest" ]] || die "could not fetch $SYS_CRATE=$SYS_VERSION with cargo (is crates.io reachable?)"
    dir="$(dirname "$manifest")"
    [[ -d "$dir/tigerbeetle" ]] || die "$dir has no vendored tigerbeetle/ source"
    printf '%s\n' "$dir"
}

SYS_SRC="$(find_sys_src)"
grep -q "$TB_COMMIT" "$SYS_SRC/build.rs" ||
    die "$SYS_SRC/build.rs does not pin TigerBeetle commit $TB_COMMIT; wrong crate version?"
[[ -f "$SYS_SRC/tigerbeetle/build.zig" ]] || die "$SYS_SRC/tigerbeetle/build.zig not found"

# 3. Build in a scratch copy (the registry copy must stay pristine).
log "building TigerBeetle $TB_VERSION server from $SYS_SRC/tigerbeetle"
log "  (scratch dir $BUILD_DIR; takes ~4-5 minutes on 2 cores)..."
rm -rf "$BUILD_DIR"
mkdir -p "$BUILD_DIR"
cp -R "$SYS_SRC/tigerbeetle/." "$BUILD_DIR/"
chmod -R u+w "$BUILD_DIR"

start=$(date +%s)
if ! (cd "$BUILD_DIR" && env -u CI "$ZIG" build \
        -Drelease \
        "-Dconfig-release=$TB_VERSION" \
        "-Dconfig-release-client-min=$TB_VERSION" \
        "-Dgit-commit=$TB_COMMIT" >&2); then
    die "zig build of the TigerBeetle server failed (scratch dir kept at $BUILD_DIR)"
fi
log "server build took $(( $(date +%s) - start ))s"

built="$BUILD_DIR/zig-out/bin/tigerbeetle"
[[ -x "$built" ]] || die "zig build succeeded but $built is missing"
mkdir -p "$OUT_DIR"
cp "$built" "$OUT_BIN.tmp.$$"
chmod 755 "$OUT_BIN.tmp.$$"
mv -f "$OUT_BIN.tmp.$$" "$OUT_BIN"

server_ok "$OUT_BIN" || die "'$OUT_BIN version' does not report $TB_VERSION: $("$OUT_BIN" version 2>&1 | head -3)"
if [[ "${TB_KEEP_BUILD_DIR:-0}" != "1" ]]; then
    rm -rf "$BUILD_DIR"
fi
log "TigerBeetle $TB_VERSION cached at $OUT_BIN"
printf '%s\n' "$OUT_BIN"
