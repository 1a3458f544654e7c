#!/usr/bin/env bash
# Builds Trove (release) and runs trove-bench: a fresh local cluster side
# by side with nginx. Arguments go to trove-bench (see --help), e.g.
#   scripts/bench.sh --size 256MiB --iterations 5
#   scripts/bench.sh --smoke
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trove-target}"
cargo build --release --bins
exec "$CARGO_TARGET_DIR/release/trove-bench" "$@"
