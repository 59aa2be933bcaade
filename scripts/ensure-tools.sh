#!/usr/bin/env bash
# Makes sure the tools the tests and the walk-through use are here: redis-server (the
# compatibility oracle), redis-cli and redis-benchmark, etcd (the control plane's HA store, which
# its tests start) (Debian's packages, installed with apt-get when missing and we are root), and
# redis-py at the version e2e/python/requirements.txt pins (from PyPI with pip). Otherwise says
# exactly what is missing and fails. The build itself needs none of them (protox compiles the
# .proto files, no system protoc).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Each tool, and the Debian package that has it.
declare -A package=(
  [redis-server]=redis-server [redis-cli]=redis-tools [redis-benchmark]=redis-tools
  [etcd]=etcd-server
)
tools=(redis-server redis-cli redis-benchmark etcd)
missing=()
packages=()
for tool in "${tools[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing+=("$tool")
    [[ " ${packages[*]} " == *" ${package[$tool]} "* ]] || packages+=("${package[$tool]}")
  fi
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${packages[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${packages[@]}" >/dev/null
    # The packages may start a system redis-server on 6379 (the proxy's port) and an etcd on
    # 2379: stop them, the tests start their own on free ports.
    if command -v service >/dev/null 2>&1; then
      service redis-server stop >/dev/null 2>&1 || true
      service etcd stop >/dev/null 2>&1 || true
    fi
  else
    echo "missing: ${missing[*]}. Install Debian's packages (Redis 7.0, etcd 3.4):" >&2
    echo "  sudo apt-get install ${packages[*]}" >&2
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
