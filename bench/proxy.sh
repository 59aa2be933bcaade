#!/usr/bin/env bash
# The proxy benchmark of issue 5: in one run, alternating rounds of redis-benchmark (SET and GET,
# -c 50, -d 100, -r 100000, -P 1 and -P 16, --threads 1) against
#   tessera-proxy   Tessera's proxy in front of three Tessera shard nodes (deploy/local.sh)
#   twemproxy       twemproxy (Debian's nutcracker) in front of three redis-servers
#   redis-cluster   Redis Cluster of three redis-servers, with redis-benchmark --cluster
#   redis-single    one plain redis-server
#   tessera-direct  the same three Tessera shard nodes used directly, with redis-benchmark --cluster
# For each: median ops/s over the rounds, p50 and p99 latency, server CPU time per request (utime +
# stime of the proxy plus its backends from /proc/<pid>/stat around every run) and the ratios the
# targets name. See docs/benchmarks.md.
#
#   bench/proxy.sh            full run: 5 rounds (under ~10 minutes on 2 cores)
#   bench/proxy.sh --quick    smoke run: 1 round of small runs (well under a minute)
#
# Options:
#   --rounds N       rounds (default 5 in full mode, 1 in quick mode)
#   --aof            persistence on everywhere: Tessera nodes append-only with fsync every second,
#                    redis-servers --appendonly yes --appendfsync everysec (default: off everywhere)
#   --no-build       use the release binaries already in target/release (default: cargo build
#                    --release --bins first, a no-op when they are fresh)
#   --out DIR        where logs, data and results go (default: .run/bench/<UTC time>)
#   --count-syscalls also count the front process's system calls per request with `perf stat`
#                    (a diagnostic: the tracepoint adds a little CPU to every call, so not for the
#                    numbers that count)
#   --replicas       two more targets, each with one replica per master: tessera-replicas (a second
#                    Tessera cluster, TESSERA_REPLICAS=1, through its proxy; CPU: proxy + 6 nodes)
#                    and redis-cluster-replicas (six redis-servers, --cluster-replicas 1), so the
#                    cost of replication shows next to the same cost on Redis Cluster
# Environment: BENCH_PORT_BASE (default 25400): every port is BASE+0..BASE+39 (and +10000 for the
# cluster buses), all on 127.0.0.1. BENCH_N_P1 / BENCH_N_P16: requests per run (full: 100000 and
# 1000000; quick: 5000 and 50000). TESSERA_* settings of the proxy and nodes (for example
# TESSERA_BACKEND_CONNECTIONS) pass through deploy/local.sh. Every process started here is stopped
# by its PID on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=full
rounds=
build=1
aof=0
replicas=0
out=
syscalls=()
while (($#)); do
  case $1 in
    --quick) mode=quick ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --aof) aof=1 ;;
    --no-build) build=0 ;;
    --count-syscalls) syscalls=(--count-syscalls) ;;
    --replicas) replicas=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "proxy.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ $mode == quick ]]; then
  rounds=${rounds:-1} n_p1=${BENCH_N_P1:-5000} n_p16=${BENCH_N_P16:-50000}
else
  rounds=${rounds:-5} n_p1=${BENCH_N_P1:-100000} n_p16=${BENCH_N_P16:-1000000}
fi
out=${out:-$repo/.run/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

base=${BENCH_PORT_BASE:-25400}
tessera_proxy_port=$base
tessera_node_ports=("$((base + 1))" "$((base + 2))" "$((base + 3))")
tessera_cp_port=$((base + 4))
twem_port=$((base + 10))
twem_redis_ports=("$((base + 11))" "$((base + 12))" "$((base + 13))")
twem_stats_port=$((base + 19))
cluster_ports=("$((base + 21))" "$((base + 22))" "$((base + 23))")
single_port=$((base + 30))
# --replicas: Redis Cluster of three masters and three replicas; a second Tessera cluster the same.
replica_cluster_ports=("$((base + 24))" "$((base + 25))" "$((base + 26))" "$((base + 27))" "$((base + 28))" "$((base + 29))")
replica_proxy_port=$((base + 31))
replica_node_ports=("$((base + 32))" "$((base + 33))" "$((base + 34))" "$((base + 35))" "$((base + 36))" "$((base + 37))")
replica_cp_port=$((base + 38))

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'proxy.sh: %s\n' "$*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------------------------
missing=()
for tool in redis-server redis-cli redis-benchmark nutcracker python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || die "missing: ${missing[*]} (Debian: redis-server redis-tools nutcracker python3)"
  say "installing redis-server, redis-tools and nutcracker (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server redis-tools nutcracker python3 >/dev/null
  # The packages may start system services on their default ports: this script uses none of them.
  if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
    service nutcracker stop >/dev/null 2>&1 || true
  fi
fi

if ((build)); then
  say "building release binaries (cargo build --release --bins)"
  (cd "$repo" && cargo build --release --bins) >"$out/build.log" 2>&1 || die "build failed: $out/build.log"
fi
for bin in proxy shard-node control-plane clusterctl; do
  [[ -x $repo/target/release/$bin ]] || die "target/release/$bin is missing (build without --no-build)"
done

# --- process bookkeeping ------------------------------------------------------------------------
pids=()
# No node secret: redis-benchmark --cluster and the readiness checks talk to the nodes directly.
# The secret costs one AUTH per backend connection and one flag test per command, nothing per byte.
# Node timeout 15 s, Redis's default and the Redis Cluster peer's (cluster-node-timeout 15000):
# heartbeats and peer probes run every node-timeout / 10, so deploy/local.sh's 3 s would give
# Tessera five times the background wake-ups of the cluster it is compared with.
tessera_env=(
  TESSERA_NODE_TIMEOUT=15s
  TESSERA_NODE_SECRET=
  TESSERA_RUN_DIR="$out/tessera"
  TESSERA_PROXY_PORT="$tessera_proxy_port"
  TESSERA_NODE_PORTS="${tessera_node_ports[*]}"
  TESSERA_CP_PORT="$tessera_cp_port"
  TESSERA_PROFILE=release
  TESSERA_SKIP_BUILD=1
  TESSERA_WAIT_SECS=30
  TESSERA_APPENDONLY=$([[ $aof == 1 ]] && echo yes || echo no)
  TESSERA_APPENDFSYNC=everysec
  RUST_LOG=warn
)
# The second Tessera cluster of --replicas: the same settings, its own ports and run directory.
tessera_replicas_env=(
  "${tessera_env[@]}"
  TESSERA_REPLICAS=1
  TESSERA_RUN_DIR="$out/tessera-replicas"
  TESSERA_PROXY_PORT="$replica_proxy_port"
  TESSERA_NODE_PORTS="${replica_node_ports[*]}"
  TESSERA_CP_PORT="$replica_cp_port"
)

cleanup() {
  local status=$?
  trap - EXIT
  trap "" INT TERM # a second signal must not cut the cleanup short
  say "stopping everything this run started"
  # Tessera through its launcher first (SIGTERM by the PIDs in its pid files, in order)...
  if [[ -d $out/tessera ]]; then
    env "${tessera_env[@]}" "$repo/deploy/local.sh" down >>"$out/tessera-down.log" 2>&1 || true
  fi
  if [[ -d $out/tessera-replicas ]]; then
    env "${tessera_replicas_env[@]}" "$repo/deploy/local.sh" down >>"$out/tessera-down.log" 2>&1 || true
  fi
  local file
  for file in "$out"/tessera/*.pid "$out"/tessera-replicas/*.pid; do
    [[ -f $file ]] && pids+=("$(<"$file")")
  done
  # ...then every PID recorded here: SIGTERM, a bounded wait, SIGKILL for any left.
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Polls a command until it succeeds (bounded).
wait_for() {
  local what=$1 deadline=$((SECONDS + 30))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "gave up waiting for $what (logs: $out)"
    sleep 0.1
  done
}

answers() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }
cluster_ok() { redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }
# twemproxy forwards keyed commands only: a SET proves the backends are reachable through it.
twem_ready() { [[ $(redis-cli -h 127.0.0.1 -p "$1" set bench:ready 1 2>/dev/null) == OK ]]; }

replica_ports=()
((replicas)) && replica_ports=("${replica_cluster_ports[@]}" "$replica_proxy_port" "${replica_node_ports[@]}" "$replica_cp_port")
for port in "$tessera_proxy_port" "${tessera_node_ports[@]}" "$tessera_cp_port" "$twem_port" \
  "${twem_redis_ports[@]}" "$twem_stats_port" "${cluster_ports[@]}" "$single_port" "${replica_ports[@]}"; do
  port_free "$port" || die "port $port is taken (set BENCH_PORT_BASE)"
done
bus_ports=("${cluster_ports[@]}" "${tessera_node_ports[@]}")
((replicas)) && bus_ports+=("${replica_cluster_ports[@]}" "${replica_node_ports[@]}")
for port in "${bus_ports[@]}"; do
  port_free $((port + 10000)) || die "port $((port + 10000)) (a cluster bus) is taken (set BENCH_PORT_BASE)"
done

redis_persistence=(--save '' --appendonly no)
((aof)) && redis_persistence=(--save '' --appendonly yes --appendfsync everysec)

# Starts a redis-server in the foreground of a background job; its PID goes to the list.
start_redis() {
  local port=$1 dir=$out/redis-$1
  shift
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --logfile "$dir/redis.log" \
    --daemonize no "${redis_persistence[@]}" "$@" </dev/null >/dev/null 2>&1 &
  pids+=("$!")
  wait_for "redis-server on $port" answers "$port"
}

# --- start ----------------------------------------------------------------------------------------
say "results and logs: $out"
say "starting one redis-server ($single_port)"
start_redis "$single_port"
single_pid=${pids[-1]}

say "starting twemproxy ($twem_port) in front of three redis-servers (${twem_redis_ports[*]})"
twem_pids=()
for port in "${twem_redis_ports[@]}"; do
  start_redis "$port"
  twem_pids+=("${pids[-1]}")
done
{
  echo "bench:"
  echo "  listen: 127.0.0.1:$twem_port"
  echo "  hash: fnv1a_64"
  echo "  distribution: ketama"
  echo "  redis: true"
  echo "  auto_eject_hosts: false"
  echo "  server_connections: 1"
  echo "  servers:"
  for port in "${twem_redis_ports[@]}"; do echo "   - 127.0.0.1:$port:1"; done
} >"$out/nutcracker.yml"
nutcracker -c "$out/nutcracker.yml" -s "$twem_stats_port" -a 127.0.0.1 -o "$out/nutcracker.log" \
  -p "$out/nutcracker.pid" </dev/null >/dev/null 2>&1 &
pids+=("$!")
twem_pids=("$!" "${twem_pids[@]}")
wait_for "twemproxy on $twem_port" twem_ready "$twem_port"

say "starting Redis Cluster (${cluster_ports[*]})"
cluster_pids=()
cluster_addrs=()
for port in "${cluster_ports[@]}"; do
  start_redis "$port" --cluster-enabled yes --cluster-config-file "$out/redis-$port/nodes.conf"
  cluster_pids+=("${pids[-1]}")
  cluster_addrs+=("127.0.0.1:$port")
done
redis-cli --cluster create "${cluster_addrs[@]}" --cluster-replicas 0 --cluster-yes \
  >"$out/redis-cluster-create.log" 2>&1 || die "redis-cli --cluster create failed: $out/redis-cluster-create.log"
for port in "${cluster_ports[@]}"; do wait_for "Redis Cluster state ok on $port" cluster_ok "$port"; done

say "starting Tessera: control plane ($tessera_cp_port), nodes (${tessera_node_ports[*]}), proxy ($tessera_proxy_port)"
env "${tessera_env[@]}" "$repo/deploy/local.sh" up >"$out/tessera-up.log" 2>&1 \
  || die "deploy/local.sh up failed: $out/tessera-up.log"
tessera_proxy_pid=$(<"$out/tessera/proxy.pid")
tessera_node_pids=()
for i in 1 2 3; do tessera_node_pids+=("$(<"$out/tessera/node$i.pid")"); done
wait_for "the Tessera proxy" answers "$tessera_proxy_port"
for port in "${tessera_node_ports[@]}"; do wait_for "Tessera node $port state ok" cluster_ok "$port"; done

if ((replicas)); then
  say "starting Redis Cluster with replicas (${replica_cluster_ports[*]})"
  replica_cluster_pids=()
  replica_cluster_addrs=()
  for port in "${replica_cluster_ports[@]}"; do
    start_redis "$port" --cluster-enabled yes --cluster-config-file "$out/redis-$port/nodes.conf"
    replica_cluster_pids+=("${pids[-1]}")
    replica_cluster_addrs+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${replica_cluster_addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$out/redis-cluster-replicas-create.log" 2>&1 || die "redis-cli --cluster create failed: $out/redis-cluster-replicas-create.log"
  for port in "${replica_cluster_ports[@]}"; do wait_for "Redis Cluster state ok on $port" cluster_ok "$port"; done
  # Every replica linked to its master before anything is measured.
  replica_linked() { redis-cli -h 127.0.0.1 -p "$1" info replication | grep -q -e '^role:master' -e '^master_link_status:up'; }
  for port in "${replica_cluster_ports[@]}"; do wait_for "replication link of $port" replica_linked "$port"; done

  say "starting Tessera with replicas: control plane ($replica_cp_port), nodes (${replica_node_ports[*]}), proxy ($replica_proxy_port)"
  env "${tessera_replicas_env[@]}" "$repo/deploy/local.sh" up >"$out/tessera-replicas-up.log" 2>&1 \
    || die "deploy/local.sh up (replicas) failed: $out/tessera-replicas-up.log"
  replica_tessera_pids=("$(<"$out/tessera-replicas/proxy.pid")")
  for i in 1 2 3 4 5 6; do replica_tessera_pids+=("$(<"$out/tessera-replicas/node$i.pid")"); done
  wait_for "the Tessera proxy (replicas)" answers "$replica_proxy_port"
  for port in "${replica_node_ports[@]}"; do
    wait_for "Tessera node $port state ok" cluster_ok "$port"
    wait_for "replication link of $port" replica_linked "$port"
  done
fi

join() { local IFS=,; echo "$*"; }
persistence=$([[ $aof == 1 ]] && echo "append-only file, fsync every second, on every server" || echo "none on any server (Tessera TESSERA_APPENDONLY=no; redis --save '' --appendonly no)")
{
  printf 'tessera-proxy\t%s\t0\t%s\t%s\n' "$tessera_proxy_port" "$(join "$tessera_proxy_pid" "${tessera_node_pids[@]}")" \
    "Tessera proxy :$tessera_proxy_port in front of three Tessera shard nodes (CPU: proxy + 3 nodes)"
  printf 'twemproxy\t%s\t0\t%s\t%s\n' "$twem_port" "$(join "${twem_pids[@]}")" \
    "nutcracker $(nutcracker --version 2>&1 | sed -n 's/^This is nutcracker-//p') :$twem_port (fnv1a_64/ketama, 1 connection per server) in front of three redis-servers (CPU: nutcracker + 3 redis)"
  printf 'redis-cluster\t%s\t1\t%s\t%s\n' "${cluster_ports[0]}" "$(join "${cluster_pids[@]}")" \
    "Redis Cluster of three redis-servers, redis-benchmark --cluster (CPU: 3 redis)"
  printf 'redis-single\t%s\t0\t%s\t%s\n' "$single_port" "$single_pid" "one plain redis-server (CPU: it)"
  printf 'tessera-direct\t%s\t1\t%s\t%s\n' "${tessera_node_ports[0]}" "$(join "${tessera_node_pids[@]}")" \
    "the three Tessera shard nodes, redis-benchmark --cluster (CPU: 3 nodes)"
  if ((replicas)); then
    printf 'tessera-replicas\t%s\t0\t%s\t%s\n' "$replica_proxy_port" "$(join "${replica_tessera_pids[@]}")" \
      "Tessera proxy :$replica_proxy_port in front of three masters with one replica each (CPU: proxy + 6 nodes)"
    printf 'redis-cluster-replicas\t%s\t1\t%s\t%s\n' "${replica_cluster_ports[0]}" "$(join "${replica_cluster_pids[@]}")" \
      "Redis Cluster of three masters with one replica each, redis-benchmark --cluster (CPU: 6 redis)"
  fi
} >"$out/targets.tsv"

{
  command=(bench/proxy.sh --rounds "$rounds")
  [[ $mode == quick ]] && command+=(--quick)
  ((aof)) && command+=(--aof)
  ((replicas)) && command+=(--replicas)
  command+=("${syscalls[@]}")
  echo "command: ${command[*]} (-n $n_p1 at -P 1, $n_p16 at -P 16)"
  echo "settings: $(env | grep -E '^(TESSERA_BACKEND|TESSERA_WORKER|TOKIO_)' | tr '\n' ' ')"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$repo" && git diff --quiet HEAD -- proxy shard-node proto 2>/dev/null || echo ' (with uncommitted changes in proxy/shard-node/proto)')"
  echo "redis: $(redis-server --version)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/meta.txt"

say "running $rounds round(s), mode $mode"
rc=0
python3 "$repo/bench/rounds.py" --targets "$out/targets.tsv" --out "$out" --rounds "$rounds" \
  --n-p1 "$n_p1" --n-p16 "$n_p16" --mode "$mode" --persistence "$persistence" "${syscalls[@]}" || rc=$?
[[ -f $out/summary.md ]] && cat "$out/meta.txt" >>"$out/summary.md"
say "summary: $out/summary.md"
exit "$rc"
