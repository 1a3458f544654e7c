# Helpers for the scripts that install what the test suites run
# (scripts/s3-clients.sh, scripts/ui-deps.sh). Sourced, not run.

# install_packages WHO PACKAGE...: installs Debian packages (nothing when
# none are named); elsewhere fails, saying what to install.
install_packages() {
    local who=$1
    shift
    (($#)) || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$who: not a Debian system; install $* yourself" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "$who: installing $*" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# python_venv_packages: the Debian packages a Python 3 that can make a
# venv still needs (Debian's python3 needs python3-venv for that).
python_venv_packages() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo python3 python3-venv
    elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo python3-venv
    fi
}

# venv_from WHO VENV REQUIREMENTS CHECK...: makes VENV hold exactly the
# pinned REQUIREMENTS. It is reused when it was built from this very file
# and every CHECK (a command line, run with the venv's bin/ first on PATH)
# succeeds; otherwise it is built again from scratch and checked.
venv_from() {
    local who=$1 venv=$2 requirements=$3
    shift 3
    local stamp="$venv/.trove-requirements.sha256" want check complete=true
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        for check in "$@"; do
            PATH="$venv/bin:$PATH" bash -c "$check" >/dev/null 2>&1 || complete=false
        done
        if [ "$complete" = true ]; then return 0; fi
    fi
    echo "$who: building the venv $venv from $requirements" >&2
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --disable-pip-version-check --no-input -q -r "$requirements"
    for check in "$@"; do
        PATH="$venv/bin:$PATH" bash -c "$check" >/dev/null
    done
    echo "$want" >"$stamp"
}
