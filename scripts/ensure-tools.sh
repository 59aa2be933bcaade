#!/usr/bin/env bash
# Makes sure the tools the tests and the walk-through use are here: redis-server (the
# compatibility oracle), redis-cli and redis-benchmark (Debian's packages, installed with apt-get
# when missing and we are root), and redis-py at the version e2e/python/requirements.txt pins
# (from PyPI with pip). Otherwise says exactly what is missing and fails.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

missing=()
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server and redis-tools (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
    # The package starts a system redis-server on 6379, which is the proxy's port: stop it.
    if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
  else
    echo "missing: ${missing[*]}. Install Debian's redis-server and redis-tools packages (Redis 7.0):" >&2
    echo "  sudo apt-get install redis-server redis-tools" >&2
    exit 1
  fi
fi

# redis-py for e2e/tests/clients.rs, pinned.
requirements=$repo/e2e/python/requirements.txt
want=$(sed -n 's/^redis==//p' "$requirements")
have() { python3 -c 'import redis; print(redis.__version__)' 2>/dev/null || true; }
command -v python3 >/dev/null 2>&1 || { echo "missing: python3 (for the redis-py tests)" >&2; exit 1; }
if [[ $(have) != "$want" ]]; then
  echo "installing redis-py $want (pip, from $requirements)"
  if ! python3 -m pip --version >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  fi
  # A Debian python3 refuses system-wide pip installs (PEP 668) unless told otherwise.
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$requirements" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages -r "$requirements"
  [[ $(have) == "$want" ]] || { echo "redis-py $want did not install for python3" >&2; exit 1; }
fi
