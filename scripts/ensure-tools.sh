#!/usr/bin/env bash
# Makes sure the Redis tools the tests and the walk-through use are here: redis-server (the
# compatibility oracle), redis-cli and redis-benchmark. Installs Debian's packages when missing and
# we are root; otherwise says exactly what is missing.
set -euo pipefail

missing=()
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server and redis-tools (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server redis-tools >/dev/null
  # The package starts a system redis-server on 6379, which is the proxy's port: stop it.
  if command -v service >/dev/null 2>&1; then service redis-server stop >/dev/null 2>&1 || true; fi
  exit 0
fi

echo "missing: ${missing[*]}. Install Debian's redis-server and redis-tools packages (Redis 7.0):" >&2
echo "  sudo apt-get install redis-server redis-tools" >&2
exit 1
