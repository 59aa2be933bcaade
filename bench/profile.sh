#!/usr/bin/env bash
# Profiles the Tessera proxy's per-command path: starts a private Tessera cluster (deploy/local.sh,
# release binaries, persistence off), puts redis-benchmark load on the proxy, and samples the proxy
# with `perf record` (cpu-clock, DWARF call graphs), one profile per load:
#   get-p1, set-p1, get-p16, set-p16   (-c 50 -d 100 -r 100000 --threads 1)
# and, with --callgrind, runs the proxy under `valgrind --tool=callgrind` for a short GET -P 1 load
# (exact instruction counts, inclusive cost per function).
#
#   bench/profile.sh [--callgrind] [--seconds N] [--no-build] [--out DIR]
#
# Writes DIR/<load>.perf.txt (inclusive "Children" and "Self" per symbol), DIR/<load>.perf.data and
# DIR/callgrind.txt (inclusive and self instruction counts). Needs perf (Debian's linux-perf) and,
# for --callgrind, valgrind. Ports are BENCH_PORT_BASE+40..44 (default 25440..25444). Every process
# started here is stopped by its PID.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=8
build=1
callgrind=0
out=
while (($#)); do
  case $1 in
    --callgrind) callgrind=1 ;;
    --seconds) seconds=${2:?}; shift ;;
    --no-build) build=0 ;;
    --out) out=${2:?}; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
out=${out:-$repo/.run/profile/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
base=$((${BENCH_PORT_BASE:-25400} + 40))
proxy_port=$base
cp_port=$((base + 4))
node_ports="$((base + 1)) $((base + 2)) $((base + 3))"

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'profile.sh: %s\n' "$*" >&2; exit 1; }

command -v perf >/dev/null || die "perf is missing (apt-get install linux-perf)"
perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1 || die "perf record does not work here"
((callgrind == 0)) || command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
if ((build)); then
  (cd "$repo" && cargo build --release --bins) >"$out/build.log" 2>&1 || die "build failed: $out/build.log"
fi

tessera_env=(
  TESSERA_RUN_DIR="$out/tessera" TESSERA_PROXY_PORT="$proxy_port" TESSERA_NODE_PORTS="$node_ports"
  TESSERA_CP_PORT="$cp_port" TESSERA_PROFILE=release TESSERA_SKIP_BUILD=1 TESSERA_APPENDONLY=no
  RUST_LOG=warn
)
pids=()
cleanup() {
  local status=$?
  trap - EXIT
  trap "" INT TERM # a second signal must not cut the cleanup short
  say "stopping everything this run started"
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 30))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
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
proxy_pid=$(<"$out/tessera/proxy.pid")

bench() { # test pipeline requests
  redis-benchmark -h 127.0.0.1 -p "$proxy_port" -t "$1" -P "$2" -n "$3" -c 50 -d 100 -r 100000 \
    --threads 1 --csv
}
bench set 16 300000 >/dev/null # fill the keyspace so GETs find values

for load in get-p1 set-p1 get-p16 set-p16; do
  test=${load%-p*}
  pipeline=${load#*-p}
  say "perf: $load for ${seconds}s"
  perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$proxy_pid" -o "$out/$load.perf.data" \
    -- sleep "$seconds" >"$out/$load.perf.log" 2>&1 &
  perf_pid=$!
  sleep 0.5 # perf attaches
  # Enough requests to outlast the sampling window; stopped by its PID (SIGTERM: a background job
  # of a script ignores SIGINT) when the window ends.
  bench "$test" "$pipeline" 100000000 >"$out/$load.bench.csv" 2>&1 &
  bench_pid=$!
  wait "$perf_pid" || true
  kill -TERM "$bench_pid" 2>/dev/null || true
  wait "$bench_pid" 2>/dev/null || true
  {
    echo "# perf report: $load (proxy pid $proxy_pid), inclusive (Children) and Self, per symbol"
    # --no-inline: resolving inlined frames through addr2line takes minutes per profile.
    perf report -i "$out/$load.perf.data" --stdio --children --no-inline --sort symbol \
      -g none --percent-limit 1 2>/dev/null | grep -v '^$' | cut -c1-200
    echo
    echo "# by shared object (self)"
    perf report -i "$out/$load.perf.data" --stdio --no-children --no-inline --sort dso -g none 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | sed -n '1,10p'
  } >"$out/$load.perf.txt"
  say "wrote $out/$load.perf.txt"
done

if ((callgrind)); then
  say "callgrind: restarting the proxy under valgrind"
  env "${tessera_env[@]}" "$repo/deploy/local.sh" stop proxy >>"$out/tessera-up.log" 2>&1
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
    "$repo/target/release/proxy" --port "$proxy_port" --bind 127.0.0.1 \
    --control-plane "http://127.0.0.1:$cp_port" >"$out/callgrind.log" 2>&1 &
  pids+=("$!")
  vg_pid=$!
  deadline=$((SECONDS + 60))
  until [[ $(redis-cli -p "$proxy_port" get bench:none 2>/dev/null) == "" ]] \
    && redis-cli -p "$proxy_port" set bench:ready 1 2>/dev/null | grep -q OK; do
    ((SECONDS < deadline)) || die "the proxy under valgrind did not come up"
    sleep 0.2
  done
  bench get 1 20000 >"$out/callgrind.bench.csv" 2>&1
  kill -TERM "$vg_pid"
  while kill -0 "$vg_pid" 2>/dev/null && ((SECONDS < deadline + 60)); do sleep 0.2; done
  # Whole reports to files first: `| head` would end callgrind_annotate with SIGPIPE (pipefail).
  callgrind_annotate --inclusive=yes "$out/callgrind.out" >"$out/callgrind.inclusive.txt" 2>/dev/null || true
  callgrind_annotate "$out/callgrind.out" >"$out/callgrind.self.txt" 2>/dev/null || true
  {
    echo "# callgrind, GET -P 1 through the proxy: inclusive cost (instructions) per function"
    sed -n '1,120p' "$out/callgrind.inclusive.txt"
    echo
    echo "# self cost per function"
    sed -n '20,80p' "$out/callgrind.self.txt"
  } | cut -c1-220 >"$out/callgrind.txt"
  say "wrote $out/callgrind.txt"
fi
say "profiles in $out"
