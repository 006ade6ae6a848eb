#!/usr/bin/env bash
# Print the path of a Python >= 3.12: python3.13 or python3.12 on PATH, then pyenv's
# installed versions by full path (a pyenv shim refuses to run a version that is not
# selected, so shims are tried but never trusted), then python3.
set -euo pipefail

ok() {
    "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

for name in python3.13 python3.12; do
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
    done < <(ls -d "$root"/versions/3.1[23].*/bin/python3.1[23] 2>/dev/null | sort -rV)
done

if path=$(command -v python3 2>/dev/null) && ok "$path"; then
    echo "$path"
    exit 0
fi
echo "find-python: no Python >= 3.12 found (tried python3.13, python3.12, pyenv, python3)" >&2
exit 1
