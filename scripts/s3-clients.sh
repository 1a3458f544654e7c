#!/usr/bin/env bash
# Installs the S3 clients that the S3 suite (tests/tests/s3.rs) runs against
# a real gateway: aws-cli (v1), boto3, s3cmd and pytest into a Python venv,
# at the versions pinned in tests/s3/requirements.txt (from PyPI), and rclone
# from Debian's packages. The venv ($TROVE_S3_VENV, default
# ~/.cache/trove-venv) is reused when it holds exactly those versions, and
# built again otherwise. Debian/Ubuntu only for the system packages;
# elsewhere it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TROVE_S3_VENV:-$HOME/.cache/trove-venv}"
requirements=tests/s3/requirements.txt

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

# System packages: rclone, and a Python 3 that can make a venv (Debian's
# python3 needs python3-venv for that).
need=()
command -v rclone >/dev/null 2>&1 || need+=(rclone)
if ! command -v python3 >/dev/null 2>&1; then
    need+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need+=(python3-venv)
fi
if ((${#need[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "s3-clients.sh: not a Debian system; install ${need[*]} yourself" >&2
        exit 1
    fi
    echo "s3-clients.sh: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The venv: complete when it was built from this very requirements file and
# its programs answer.
stamp="$venv/.trove-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c 'import boto3, pytest' >/dev/null 2>&1 \
    && "$venv/bin/aws" --version >/dev/null 2>&1 \
    && "$venv/bin/s3cmd" --version >/dev/null 2>&1; then
    exit 0
fi
echo "s3-clients.sh: building the venv $venv (awscli, boto3, s3cmd, pytest)" >&2
python3 -m venv --clear "$venv"
"$venv/bin/pip" install --disable-pip-version-check --no-input -q -r "$requirements"
"$venv/bin/python" -c 'import boto3, pytest'
"$venv/bin/aws" --version >/dev/null
"$venv/bin/s3cmd" --version >/dev/null
echo "$want" >"$stamp"
