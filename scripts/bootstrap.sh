#!/usr/bin/env bash
# From a fresh clone to a ready .venv: system packages where missing (as root), a virtualenv
# with a Python >= 3.12, and the package installed editable with its extras. Quick when
# everything is already there, so `make test` can run it every time.
#
#   scripts/bootstrap.sh                 # extras postgres,mysql,test
#   EXTRAS=postgres,mysql,test,bench scripts/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-postgres,mysql,test}

scripts/system-packages.sh

if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
    python=$(scripts/find-python.sh)
    echo "bootstrap: creating $VENV with $python ($("$python" --version 2>&1))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
fi

# Reinstall when pyproject.toml changed or other extras are asked for.
stamp="$VENV/.djangotasks-installed"
want="$EXTRAS $(cksum < pyproject.toml)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "bootstrap: installing djangotasks[$EXTRAS] into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
fi
