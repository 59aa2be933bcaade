#!/usr/bin/env bash
# Instructions per request of the proxy (or of one shard node), counted by callgrind: repeatable
# on a noisy shared machine where ops/s and CPU time are not. Starts a private Tessera cluster
# (deploy/local.sh, release binaries, persistence off), restarts the proxy (or node1) under
# `valgrind --tool=callgrind --instr-atstart=no`, and for each load switches counting on only for
# the redis-benchmark run, so startup and idle time are not counted:
#   get-p1 set-p1 get-p16 set-p16   (-c 50 -d 100 -r 100000 --threads 1)
#
#   bench/callgrind.sh [--target proxy|node] [--requests N] [--no-build] [--out DIR] [LOAD...]
#
# Prints "LOAD N instructions/request" per load (for a node: per request of the whole load, of
# which node1 serves about a third) and writes DIR/<load>.callgrind.out and
# DIR/<load>.inclusive.txt (callgrind_annotate, inclusive). Ports BENCH_PORT_BASE+50..54 (default
# 25450..25454). Every process started here is stopped by its PID (the cluster by deploy/local.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=proxy
requests=20000
build=1
out=
loads=()
while (($#)); do
  case $1 in
    --target) target=${2:?}; shift ;;
    --requests) requests=${2:?}; shift ;;
    --no-build) build=0 ;;
    --out) out=${2:?}; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    get-p1 | set-p1 | get-p16 | set-p16) loads+=("$1") ;;
    *) echo "callgrind.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
((${#loads[@]})) || loads=(get-p1 set-p1 get-p16 set-p16)
[[ $target == proxy || $target == node ]] || { echo "callgrind.sh: --target proxy|node" >&2; exit 2; }
out=${out:-$repo/.run/callgrind/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
base=$((${BENCH_PORT_BASE:-25400} + 50))
proxy_port=$base
cp_port=$((base + 4))
node_ports="$((base + 1)) $((base + 2)) $((base + 3))"
node1_port=$((base + 1))

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'callgrind.sh: %s\n' "$*" >&2; exit 1; }

command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
if ((build)); then
  (cd "$repo" && cargo build --release --bins) >"$out/build.log" 2>&1 || die "build failed: $out/build.log"
fi
bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release

# The node secret: deploy/local.sh's processes and the one restarted under valgrind share it (a
# node without it would refuse the proxy's AUTH).
node_secret=callgrind-$RANDOM$RANDOM
tessera_env=(
  TESSERA_NODE_SECRET="$node_secret" TESSERA_RUN_DIR="$out/tessera" TESSERA_PROXY_PORT="$proxy_port" TESSERA_NODE_PORTS="$node_ports"
  TESSERA_CP_PORT="$cp_port" TESSERA_PROFILE=release TESSERA_SKIP_BUILD=1 TESSERA_APPENDONLY=no
  RUST_LOG=warn
)
vg_pid=
cleanup() {
  local status=$?
  trap - EXIT
  trap "" INT TERM
  if [[ -n $vg_pid ]]; then
    kill -TERM "$vg_pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$vg_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$vg_pid" 2>/dev/null || true
  fi
  env "${tessera_env[@]}" "$repo/deploy/local.sh" down >>"$out/tessera-down.log" 2>&1 || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in $proxy_port $node_ports $cp_port; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port is taken (set BENCH_PORT_BASE)"
done
say "starting Tessera (proxy $proxy_port, nodes $node_ports, control plane $cp_port)"
env "${tessera_env[@]}" "$repo/deploy/local.sh" up >"$out/tessera-up.log" 2>&1 || die "local.sh up failed: $out/tessera-up.log"

vg=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.%p.out")
if [[ $target == proxy ]]; then
  env "${tessera_env[@]}" "$repo/deploy/local.sh" stop proxy >>"$out/tessera-up.log" 2>&1
  TESSERA_NODE_SECRET=$node_secret RUST_LOG=warn "${vg[@]}" "$bin_dir/proxy" --port "$proxy_port" --bind 127.0.0.1 \
    --control-plane "http://127.0.0.1:$cp_port" >"$out/valgrind.log" 2>&1 &
  vg_pid=$!
else
  env "${tessera_env[@]}" "$repo/deploy/local.sh" stop node1 >>"$out/tessera-up.log" 2>&1
  TESSERA_NODE_SECRET=$node_secret RUST_LOG=warn "${vg[@]}" "$bin_dir/shard-node" --port "$node1_port" --bind 127.0.0.1 \
    --control-plane "http://127.0.0.1:$cp_port" --data-dir "$out/tessera/node1" --appendonly no \
    >"$out/valgrind.log" 2>&1 &
  vg_pid=$!
fi
deadline=$((SECONDS + 120))
until redis-cli -p "$proxy_port" set bench:ready 1 2>/dev/null | grep -q OK \
  && REDISCLI_AUTH=$node_secret redis-cli -p "$node1_port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do
  ((SECONDS < deadline)) || die "the $target under valgrind did not come up (see $out/valgrind.log)"
  sleep 0.2
done

bench() { # test pipeline requests
  redis-benchmark -h 127.0.0.1 -p "$proxy_port" -t "$1" -P "$2" -n "$3" -c 50 -d 100 -r 100000 \
    --threads 1 --csv
}
bench set 16 "$requests" >/dev/null # fill the keyspace so GETs find values

for load in "${loads[@]}"; do
  test=${load%-p*}
  pipeline=${load#*-p}
  n=$requests
  callgrind_control -z "$vg_pid" >/dev/null 2>&1
  callgrind_control -i on "$vg_pid" >/dev/null 2>&1
  bench "$test" "$pipeline" "$n" >"$out/$load.bench.csv" 2>&1
  callgrind_control -i off "$vg_pid" >/dev/null 2>&1
  callgrind_control -d "$load" "$vg_pid" >/dev/null 2>&1
  dump=$(ls -t "$out"/callgrind.*.out.* 2>/dev/null | head -1)
  [[ -n $dump ]] || die "no callgrind dump for $load"
  mv "$dump" "$out/$load.callgrind.out"
  # Whole reports to files first: a reader that stops early would end callgrind_annotate with
  # SIGPIPE (pipefail).
  callgrind_annotate --inclusive=yes "$out/$load.callgrind.out" >"$out/$load.inclusive.txt" 2>/dev/null || true
  total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' "$out/$load.inclusive.txt")
  per=$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.0f", t / n }')
  if [[ $target == node ]]; then
    echo "$load $per instructions per request of the load (node1 serves about a third of them)"
  else
    echo "$load $per instructions/request"
  fi
done
say "callgrind outputs in $out"
