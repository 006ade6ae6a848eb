#!/usr/bin/env bash
# From a fresh clone to a ready .venv: system packages where missing (as root), a virtualenv
# with a Python >= 3.12, and the package installed editable with its extras. Quick when
# everything is already there, so `make test` can run it every time.
#
#   scripts/bootstrap.sh                 # extras postgres,mysql,metrics,test
#   EXTRAS=postgres,mysql,metrics,test,bench scripts/bootstrap.sh
#   VENV=.venv-django60 PYTHON_VERSION=3.12 scripts/bootstrap.sh   # that Python's minor
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-postgres,mysql,metrics,test}
PYTHON_VERSION=${PYTHON_VERSION:-}

scripts/system-packages.sh

wanted="sys.version_info < (3, 12)"
[[ -n "$PYTHON_VERSION" ]] && wanted="'%d.%d' % sys.version_info[:2] != '$PYTHON_VERSION'"
if ! "$VENV/bin/python" -c "import sys; sys.exit($wanted)" >/dev/null 2>&1; then
    python=$(scripts/find-python.sh $PYTHON_VERSION)
    echo "bootstrap: creating $VENV with $python ($("$python" --version 2>&1))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
fi

# Install again when pyproject.toml changed or an extra is asked for that is not installed
# (so `make bench`, which adds the bench extra, and `make test` do not undo each other).
stamp="$VENV/.djangotasks-installed"
checksum=$(cksum < pyproject.toml)
installed=""
if [[ -f "$stamp" ]] && [[ "$(sed -n 2p "$stamp")" == "$checksum" ]]; then
    installed=$(sed -n 1p "$stamp")
fi
missing=0
for extra in ${EXTRAS//,/ }; do
    [[ ",$installed," == *",$extra,"* ]] || missing=1
done
if ((missing)); then
    extras=$(printf '%s\n' ${installed//,/ } ${EXTRAS//,/ } | sort -u | paste -sd, -)
    echo "bootstrap: installing djangotasks[$extras] into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
    printf '%s\n%s\n' "$extras" "$checksum" > "$stamp"
fi
