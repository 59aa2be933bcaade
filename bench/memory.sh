#!/usr/bin/env bash
# Memory per key and load time: one Tessera shard node against one redis-server (issue 4).
# Loads N string keys of 100 bytes and M hashes of 10 fields (each field value 10 bytes) with
# `redis-cli --pipe`, then reports RSS growth per key and the load time of each, side by side.
# All keys share the hash tag {m}, so on Tessera they land in one slot served by node1 of a local
# cluster started with deploy/local.sh on private ports; the control plane and the other nodes do
# not count (only node1's RSS is read). Everything it starts is stopped by PID on exit.
#   bench/memory.sh [STRINGS] [HASHES]     (defaults 1000000 100000)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
strings=${1:-1000000}
hashes=${2:-100000}
base=${BENCH_PORT_BASE:-25600}
run=$(mktemp -d)
redis_pid=""
export TESSERA_RUN_DIR=$run/tessera TESSERA_PROXY_PORT=$((base + 1)) TESSERA_CP_PORT=$((base + 2))
export TESSERA_NODE_PORTS="$((base + 3)) $((base + 4)) $((base + 5))" TESSERA_SKIP_BUILD=1
cleanup() {
  "$repo/deploy/local.sh" down >/dev/null 2>&1 || true
  [[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

(cd "$repo" && cargo build --release --bins -q)
"$repo/deploy/local.sh" up >/dev/null

redis-server --port "$base" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --loglevel warning >/dev/null 2>&1 &
redis_pid=$!
until redis-cli -p "$base" ping >/dev/null 2>&1; do sleep 0.1; done

# The load as RESP, generated once.
python3 - "$strings" "$hashes" >"$run/load.resp" <<'PY'
import sys
strings, hashes = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
def cmd(*args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
value = b"v" * 100
for i in range(strings):
    cmd(b"SET", b"{m}string:%d" % i, value)
for i in range(hashes):
    fields = []
    for f in range(10):
        fields += [b"field%d" % f, b"value%05d" % f]
    cmd(b"HSET", b"{m}hash:%d" % i, *fields)
PY

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# clusterctl create gives node1 0-5460, node2 5461-10922, node3 10923-16383 (redis-cli's split).
slot=$(redis-cli -p "$TESSERA_PROXY_PORT" cluster keyslot '{m}')
if ((slot <= 5460)); then owner=1; elif ((slot <= 10922)); then owner=2; else owner=3; fi
owner_port=$((base + 2 + owner))
node_pid=$(<"$run/tessera/node$owner.pid")

measure() { # name port pid
  local before after start end
  before=$(rss_kb "$3")
  start=$(date +%s.%N)
  redis-cli -p "$2" --pipe <"$run/load.resp" >/dev/null
  end=$(date +%s.%N)
  after=$(rss_kb "$3")
  local keys=$((strings + hashes))
  printf '| %s | %d | %.0f | %.2f |\n' "$1" "$(redis-cli -p "$2" dbsize)" \
    "$(echo "($after - $before) * 1024 / $keys" | bc -l)" "$(echo "$end - $start" | bc -l)"
}
echo "strings=$strings (100-byte values), hashes=$hashes (10 fields), one process each"
echo "| server | keys | RSS growth per key (bytes) | load time (s) |"
echo "|---|---:|---:|---:|"
measure redis-server "$base" "$redis_pid"
measure tessera-shard-node "$owner_port" "$node_pid"
