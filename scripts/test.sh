#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
#   1. Provisions TigerBeetle (Zig from PyPI, libclang from Debian, the 0.16.78 server built
#      from the source inside the tigerbeetle-unofficial-sys crate; cached under ~/.cache, so
#      only the first run on a machine pays the ~4 minutes), and Debian's chromium for the
#      limits page's browser test (scripts/provision-chromium.sh; apt, first run only).
#   2. Checks formatting and lints (clippy with warnings as errors): the full build, the
#      default features, and the client library alone (`--no-default-features --features
#      client`).
#   3. Runs every test — unit, model-based, stress, HTTP, conformance on both backends,
#      TigerBeetle integration and chaos tests, and the BDD features — with the TigerBeetle
#      backend compiled in. TigerBeetle tests fail (never skip) when the server is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[test] %s\n' "$*" >&2; }

FEATURES="${RATELIMITER_TEST_FEATURES:-tigerbeetle}"

if [[ " $FEATURES " == *" tigerbeetle "* ]]; then
    log "provisioning TigerBeetle"
    TB_BIN="$(scripts/provision-tigerbeetle.sh)"
    export TB_BIN
    log "TigerBeetle server: $TB_BIN"
fi

log "provisioning Chromium (the limits page's browser test)"
CHROMIUM_BIN="$(scripts/provision-chromium.sh)"
export CHROMIUM_BIN

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (warnings are errors)"
cargo clippy --all-targets --features "$FEATURES" -- -D warnings

# The default features (memory backend only), as `cargo build` users get them.
log "cargo clippy, default features"
cargo clippy --all-targets -- -D warnings

# The client library alone: reuses the dependencies checked above, rechecks only this crate.
log "cargo clippy, client library only (--no-default-features --features client)"
cargo clippy --all-targets --no-default-features --features client -- -D warnings

log "cargo test"
cargo test --features "$FEATURES" --no-fail-fast
