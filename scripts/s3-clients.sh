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
. scripts/lib/install.sh

read -ra need <<<"$(python_venv_packages)"
command -v rclone >/dev/null 2>&1 || need+=(rclone)
install_packages s3-clients.sh "${need[@]}"

venv_from s3-clients.sh "${TROVE_S3_VENV:-$HOME/.cache/trove-venv}" tests/s3/requirements.txt \
    "python -c 'import boto3, pytest'" "aws --version" "s3cmd --version"
