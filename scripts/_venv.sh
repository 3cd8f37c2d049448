# Sourced by scripts/start and scripts/test (from the checkout's root): the .venv they share.
# shellcheck shell=bash

# Pick Python >= 3.11: python3.11 first, else python3 when it is recent enough. Each candidate
# is run, not just looked up: a pyenv shim exists even when that version is not installed.
find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: metawsm needs Python >= 3.11 (python3.11, or python3 >= 3.11, on PATH)" >&2
    return 2
}

# An editable install whose .pth file names the checkout (setuptools' compat mode): the default
# mode installs an import finder that every Python process of the .venv loads at start-up, ~5 ms
# of each command line call (docs/performance.md, session 12). Part of the install's stamp, so a
# .venv installed the other way is reinstalled.
EDITABLE_MODE=compat

# Create .venv if missing; (re)install "$1" only when pyproject.toml changed since the last time
# ("$2" names the stamp, "$3" says what is installed).
ensure_venv() {
    local target=$1 stamp=".venv/.metawsm-install-$2" what=$3 digest python
    if [ ! -x .venv/bin/python ]; then
        python=$(find_python)
        echo "setting up .venv with $python ..." >&2
        if ! "$python" -m venv .venv; then
            rm -rf .venv
            echo "error: could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        fi
        rm -f .venv/.metawsm-install-*
    fi
    digest=$(.venv/bin/python -c 'import hashlib, sys; print(hashlib.sha256(open("pyproject.toml", "rb").read() + sys.argv[1].encode()).hexdigest())' "$EDITABLE_MODE")
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$digest" ]; then
        echo "installing $what into .venv ..." >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check \
            --config-settings "editable_mode=$EDITABLE_MODE" -e "$target"
        echo "$digest" >"$stamp"
    fi
}
