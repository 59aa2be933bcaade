#!/usr/bin/env bash
# Memory per key and load time: one Tessera shard node against one redis-server (issue 4).
# Loads N string keys of 100 bytes and M hashes of 10 fields (each field value 10 bytes) with
# `redis-cli --pipe`, then reports RSS growth per key and the load time of each, side by side.
# By default all keys share the hash tag {m}, so on Tessera they land in one slot (one per-slot
# table, the worst case for its growth) served by one node of a local cluster started with
# deploy/local.sh on private ports; only that node's RSS is read. With BENCH_SPREAD=1 the keys
# carry no hash tag: they spread over all 16384 slots as in real use, each node is loaded with the
# keys of its own slots, and the three nodes' RSS growth is summed. Everything it starts is
# stopped by PID on exit.
#   bench/memory.sh [STRINGS] [HASHES]     (defaults 1000000 100000)
# TESSERA_APPENDONLY=no (read by the shard nodes) measures Tessera without its append-only file,
# as redis-server runs here.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
strings=${1:-1000000}
hashes=${2:-100000}
base=${BENCH_PORT_BASE:-25600}
run=$(mktemp -d)
redis_pid=""
export TESSERA_RUN_DIR=$run/tessera TESSERA_PROXY_PORT=$((base + 1)) TESSERA_CP_PORT=$((base + 2))
export TESSERA_NODE_PORTS="$((base + 3)) $((base + 4)) $((base + 5))" TESSERA_SKIP_BUILD=1
# No node secret: the load goes to the nodes directly with redis-cli --pipe.
export TESSERA_NODE_SECRET=
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

spread=${BENCH_SPREAD:-0}
# The load as RESP, generated once: load.resp holds every command (for redis-server), node<N>.resp
# the commands of the slots node N serves (clusterctl create's split: 0-5460, 5461-10922, rest).
python3 - "$strings" "$hashes" "$spread" "$run" <<'PY'
import sys
strings, hashes, spread, run = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
tag = b"" if spread else b"{m}"
def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc
def slot(key):
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key) % 16384
files = [open(f"{run}/load.resp", "wb")] + [open(f"{run}/node{n}.resp", "wb") for n in (1, 2, 3)]
def cmd(key, *args):
    args = (args[0], key) + args[1:]
    data = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    s = slot(key)
    files[0].write(data)
    files[1 if s <= 5460 else 2 if s <= 10922 else 3].write(data)
value = b"v" * 100
for i in range(strings):
    cmd(tag + b"string:%d" % i, b"SET", value)
fields = []
for f in range(10):
    fields += [b"field%d" % f, b"value%05d" % f]
for i in range(hashes):
    cmd(tag + b"hash:%d" % i, b"HSET", *fields)
for f in files:
    f.close()
PY

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
node_port() { echo $((base + 2 + $1)); }
node_pid() { cat "$run/tessera/node$1.pid"; }
keys=$((strings + hashes))

# RSS once it has stopped moving (two readings a second apart within 1 MB, at most 20 s): a
# Tessera node may still be rewriting its append-only file right after the load, and that
# rewrite's buffers are not the keys' memory.
settled_rss_kb() {
  local last now
  last=$(rss_kb "$1")
  for _ in $(seq 20); do
    sleep 1
    now=$(rss_kb "$1")
    (( now - last < 1024 && last - now < 1024 )) && break
    last=$now
  done
  echo "$now"
}

report() { # name keys rss_growth_kb seconds
  printf '| %s | %d | %.0f | %.2f |\n' "$1" "$2" "$(echo "$3 * 1024 / $keys" | bc -l)" "$4"
}

# redis-server: everything through one pipe.
before=$(rss_kb "$redis_pid")
start=$(date +%s.%N)
redis-cli -p "$base" --pipe <"$run/load.resp" >/dev/null
end=$(date +%s.%N)
redis_row=$(report redis-server "$(redis-cli -p "$base" dbsize)" $(($(settled_rss_kb "$redis_pid") - before)) \
  "$(echo "$end - $start" | bc -l)")

# Tessera: each node gets the commands of its slots (all of them go to one node without spread).
grown=0 held=0 seconds=0
for n in 1 2 3; do
  [[ -s $run/node$n.resp ]] || continue
  before=$(rss_kb "$(node_pid $n)")
  start=$(date +%s.%N)
  redis-cli -p "$(node_port $n)" --pipe <"$run/node$n.resp" >/dev/null
  end=$(date +%s.%N)
  seconds=$(echo "$seconds + $end - $start" | bc -l)
  grown=$((grown + $(settled_rss_kb "$(node_pid $n)") - before))
done
for n in 1 2 3; do held=$((held + $(redis-cli -p "$(node_port $n)" dbsize))); done
tessera_row=$(report tessera-shard-node "$held" "$grown" "$seconds")

echo "strings=$strings (100-byte values), hashes=$hashes (10 fields), spread=$spread, tessera appendonly=${TESSERA_APPENDONLY:-yes}"
echo "| server | keys | RSS growth per key (bytes) | load time (s) |"
echo "|---|---:|---:|---:|"
echo "$redis_row"
echo "$tessera_row"
