#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (or of the version given, e.g. `find-python.sh 3.12`):
# python3.13 or python3.12 on PATH, then pyenv's installed versions by full path (a pyenv
# shim refuses to run a version that is not selected, so shims are tried but never trusted),
# then python3.
set -euo pipefail

want=${1:-}
minimum=${want:-3.12}

ok() {
    "$1" -c "import sys, venv; v = sys.version_info[:2]; want = tuple(map(int, '$minimum'.split('.')))
sys.exit(v != want if '$want' else v < want)" >/dev/null 2>&1
}

if [[ -n "$want" ]]; then
    names=("python$want")
    pattern="$want.*/bin/python$want"
else
    names=(python3.13 python3.12)
    pattern="3.1[23].*/bin/python3.1[23]"
fi

for name in "${names[@]}"; do
    if path=$(command -v "$name" 2>/dev/null) && ok "$path"; then
        echo "$path"
        exit 0
    fi
done

roots=()
if command -v pyenv >/dev/null 2>&1; then
    roots+=("$(pyenv root 2>/dev/null || true)")
fi
roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
for root in "${roots[@]}"; do
    [[ -n "$root" && -d "$root/versions" ]] || continue
    # Newest first.
    while IFS= read -r candidate; do
        if [[ -x "$candidate" ]] && ok "$candidate"; then
            echo "$candidate"
            exit 0
        fi
    done < <(ls -d "$root"/versions/$pattern 2>/dev/null | sort -rV)
done

if path=$(command -v python3 2>/dev/null) && ok "$path"; then
    echo "$path"
    exit 0
fi
echo "find-python: no Python ${want:->= 3.12} found (tried ${names[*]}, pyenv, python3)" >&2
exit 1
