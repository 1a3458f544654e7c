#!/usr/bin/env bash
# Installs what the status page and API suite (tests/tests/ui.rs) runs:
# Debian's chromium and chromium-driver (headless Chromium and its
# WebDriver), and a Python venv ($TROVE_UI_VENV, default
# ~/.cache/trove-ui-venv) with selenium, pytest and schemathesis at the
# versions pinned in tests/ui/requirements.txt (from PyPI). The venv is
# reused while it was built from exactly that file and its tools answer.
#
# A venv of its own, not the S3 suite's: scripts/s3-clients.sh rebuilds
# that one from scratch whenever its pins change, and the two sets of pins
# should not constrain each other.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/install.sh

read -ra need <<<"$(python_venv_packages)"
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
install_packages ui-deps.sh "${need[@]}"
chromedriver --version >/dev/null

venv_from ui-deps.sh "${TROVE_UI_VENV:-$HOME/.cache/trove-ui-venv}" tests/ui/requirements.txt \
    "python -c 'import selenium, pytest'" "schemathesis --version"
