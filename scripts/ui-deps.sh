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

venv="${TROVE_UI_VENV:-$HOME/.cache/trove-ui-venv}"
requirements=tests/ui/requirements.txt

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if ! command -v python3 >/dev/null 2>&1; then
    need+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need+=(python3-venv)
fi
if ((${#need[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ui-deps.sh: not a Debian system; install ${need[*]} yourself" >&2
        exit 1
    fi
    echo "ui-deps.sh: installing ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
chromedriver --version >/dev/null

stamp="$venv/.trove-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c 'import selenium, pytest' >/dev/null 2>&1 \
    && "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    exit 0
fi
echo "ui-deps.sh: building the venv $venv (selenium, pytest, schemathesis)" >&2
python3 -m venv --clear "$venv"
"$venv/bin/pip" install --disable-pip-version-check --no-input -q -r "$requirements"
"$venv/bin/python" -c 'import selenium, pytest'
"$venv/bin/schemathesis" --version >/dev/null
echo "$want" >"$stamp"
