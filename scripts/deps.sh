#!/usr/bin/env bash
# Installs what building and running Trove needs and this machine lacks:
# libclang (RocksDB's Rust bindings are generated with it), a C++ compiler
# (RocksDB itself), curl (the README's examples) and nginx (the benchmark's
# reference; trove-bench runs its own instance on free ports). Debian/Ubuntu only;
# elsewhere it says what to install.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install the Rust toolchain first (https://rustup.rs)" >&2
    exit 1
fi

if ! command -v dpkg >/dev/null 2>&1; then
    echo "deps.sh: not a Debian system; make sure libclang, a C++ compiler and curl are installed" >&2
    exit 0
fi

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/sbin/nginx ] || need+=(nginx)

if ((${#need[@]})); then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "deps.sh: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
