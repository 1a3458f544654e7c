#!/usr/bin/env bash
# Runs the whole test suite: format and lint checks, unit tests, the
# integration tests that start real master and volume processes, the S3
# suite (tests/tests/s3.rs: aws-cli, boto3, rclone and s3cmd against a real
# gateway, installed by scripts/s3-clients.sh), the status page and API
# suite (tests/tests/ui.rs: headless Chromium and schemathesis, installed
# by scripts/ui-deps.sh), and the docker suite (containers on a private
# network) when a Docker engine answers — under CI (CI=true) a missing
# engine, S3 client, browser or schemathesis is a failure.
#
# Everything is built once, in the release profile (RocksDB's C++ takes
# ~16 minutes to compile from scratch on 2 cores; one profile means one
# build of it), into $CARGO_TARGET_DIR (default ~/.cache/trove-target) so
# later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trove-target}"
# install_tools SCRIPT WHAT SUITE: runs an installer of test tools; if it fails,
# the suite would skip its tests, which CI must not allow.
install_tools() {
    if ! "$1"; then
        if [ "${CI:-}" = true ]; then
            echo "test.sh: could not install $2 ($1), and CI must run $3" >&2
            exit 1
        fi
        echo "test.sh: could not install $2: $3 will skip its tests" >&2
    fi
}
# The S3 clients, in a venv the S3 suite finds through TROVE_S3_VENV.
export TROVE_S3_VENV="${TROVE_S3_VENV:-$HOME/.cache/trove-venv}"
install_tools scripts/s3-clients.sh "the S3 clients" "the S3 suite (tests/tests/s3.rs)"
# Chromium, chromedriver, selenium and schemathesis, for tests/tests/ui.rs.
export TROVE_UI_VENV="${TROVE_UI_VENV:-$HOME/.cache/trove-ui-venv}"
install_tools scripts/ui-deps.sh "Chromium and the UI test tools" "the UI suite (tests/tests/ui.rs)"
docker_ok=false
if docker info >/dev/null 2>&1; then
    docker_ok=true
elif [ "${CI:-}" = true ]; then
    echo "test.sh: the Docker engine does not answer (docker info), and CI must run the docker suite" >&2
    exit 1
fi

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

# The docker suite (tests/tests/docker.rs, #[ignore]d in the run above):
# the image from the binaries just built, then clusters of containers.
if [ "$docker_ok" = true ]; then
    TROVE_BIN_DIR="$CARGO_TARGET_DIR/release" ./docker.sh build
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --release -p trove-tests --test docker --run-ignored only --no-fail-fast
    else
        cargo test --release -p trove-tests --test docker --no-fail-fast -- --ignored
    fi
else
    echo "test.sh: SKIPPED the docker suite (tests/tests/docker.rs): the Docker engine does not answer (docker info)" >&2
fi
