#!/usr/bin/env bash
# Debian packages the test suite needs: the MySQL client headers (mysqlclient has no Linux
# wheel, pip compiles it), Chromium for the browser tests, and for the many-hosts tests
# (tests/hosts.py) `ip` and `unshare` to build hosts from namespaces and faketime to skew a
# host's clock. Installs only what is missing, and only as root on a Debian-like system;
# anywhere else it says what is missing and goes on.
set -euo pipefail

missing=()
# mysqlclient's build asks pkg-config for "mysqlclient" or "mariadb".
if ! command -v pkg-config >/dev/null 2>&1; then
    missing+=(pkg-config default-libmysqlclient-dev)
elif ! pkg-config --exists mysqlclient 2>/dev/null && ! pkg-config --exists mariadb 2>/dev/null; then
    missing+=(default-libmysqlclient-dev)
fi
if [[ "${DJANGOTASKS_NO_CHROMIUM:-}" != 1 ]] && ! command -v chromium >/dev/null 2>&1; then
    missing+=(chromium)
fi
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: missing ${missing[*]}; install them (as root: apt-get install ${missing[*]})." >&2
    exit 0
fi
echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package lists may be empty or stale: update before the first install.
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
