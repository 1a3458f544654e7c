#!/usr/bin/env bash
# Runs the whole test suite: format and lint checks, unit tests, and the
# integration tests that start real master and volume processes.
#
# Everything is built once, in the release profile (RocksDB's C++ takes
# ~16 minutes to compile from scratch on 2 cores; one profile means one
# build of it), into $CARGO_TARGET_DIR (default ~/.cache/trove-target) so
# later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trove-target}"

cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
# The integration tests run the binaries, so build them first.
cargo build --release --workspace --bins
# A tiny run of the benchmark, so that the command cannot rot.
"$CARGO_TARGET_DIR/release/trove-bench" --smoke
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --release --workspace --no-fail-fast
else
    cargo test --release --workspace --no-fail-fast
fi
