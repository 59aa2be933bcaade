#!/usr/bin/env bash
# The resharding benchmark: how fast a rebalance onto a new, empty fourth master moves keys, and
# what a client beside it loses, for
#   tessera        deploy/local.sh (a control plane, three masters, a proxy), a fourth shard-node,
#                  `clusterctl add-node` + `clusterctl rebalance --use-empty-masters`; the client
#                  goes through the proxy
#   redis-cluster  three redis-servers made a cluster by redis-cli --cluster create, a fourth,
#                  `redis-cli --cluster add-node` + `redis-cli --cluster rebalance
#                  --cluster-use-empty-masters`; the client talks to the nodes
# Each round starts both systems fresh, loads --keys keys of --value-size bytes (bench/reshard.py
# load, pipelined), adds the fourth master, starts the client (bench/reshard.py: --clients
# processes of one GET or SET at a time, the same cluster-aware client for both), measures its
# ops/s for --baseline seconds, then runs the rebalance and measures its wall time, the keys the
# new master got (DBSIZE) and the client's ops/s meanwhile. No replicas, no RDB saves, no
# append-only file (--appendonly yes: Tessera's default, and redis-server --appendfsync everysec).
# Prints the medians over the rounds as one table. See docs/benchmarks.md.
#
#   bench/reshard.sh                  1,000,000 keys, one round of each system (about 2 minutes)
#   bench/reshard.sh --rounds 3       medians of three
#
# Options:
#   --rounds N         rounds of each system (default 1)
#   --keys N           keys loaded (default 1000000)
#   --value-size B     value bytes (default 64)
#   --clients C        client processes (default 2)
#   --baseline S       seconds of the client alone before the move (default 5)
#   --appendonly yes|no  append-only file on both systems (default no, as in bench/failover.sh)
#   --systems "S.."    tessera and/or redis-cluster (default both)
#   --no-build         use the release binaries in target/release as they are
#   --out DIR          logs, data and results (default: .run/bench-reshard/<UTC time>)
# Environment: BENCH_PORT_BASE (default 27500): Tessera uses BASE+0 (proxy), BASE+1..4 (nodes),
# BASE+7 (control plane); Redis Cluster BASE+11..14; the cluster buses are those +10000; all on
# 127.0.0.1. Every process started here is stopped by its PID on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=1 keys=1000000 value_size=64 clients=2 baseline=5 appendonly=no
systems="tessera redis-cluster"
build=1 out=
while (($#)); do
  case $1 in
    --rounds) rounds=${2:?}; shift ;;
    --keys) keys=${2:?}; shift ;;
    --value-size) value_size=${2:?}; shift ;;
    --clients) clients=${2:?}; shift ;;
    --baseline) baseline=${2:?}; shift ;;
    --appendonly) appendonly=${2:?}; shift ;;
    --systems) systems=${2:?}; shift ;;
    --no-build) build=0 ;;
    --out) out=${2:?}; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "reshard.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for n in "$rounds" "$keys" "$value_size" "$clients" "$baseline"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "reshard.sh: '$n' is not a positive number" >&2; exit 2; }
done
[[ $appendonly == yes || $appendonly == no ]] || { echo "reshard.sh: --appendonly yes or no" >&2; exit 2; }
read -r -a systems <<<"$systems"
for s in "${systems[@]}"; do [[ $s == tessera || $s == redis-cluster ]] || { echo "reshard.sh: unknown system '$s'" >&2; exit 2; }; done

out=${out:-$repo/.run/bench-reshard/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

base=${BENCH_PORT_BASE:-27500}
proxy_port=$base
node_ports=($((base + 1)) $((base + 2)) $((base + 3)))
new_port=$((base + 4))
cp_port=$((base + 7))
cp_url=http://127.0.0.1:$cp_port
redis_ports=($((base + 11)) $((base + 12)) $((base + 13)))
redis_new=$((base + 14))
bin=${TESSERA_BIN_DIR:-$repo/target/release}

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'reshard.sh: %s\n' "$*" >&2; exit 1; }

# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
prepare_binaries "$bin"
for port in "$proxy_port" "${node_ports[@]}" "$new_port" "$cp_port" "${redis_ports[@]}" "$redis_new"; do
  port_free "$port" || die "port $port is taken (set BENCH_PORT_BASE)"
done

secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
run_dir= tessera_on=0 new_pid= redis_pids=()

tessera_up() {
  env TESSERA_RUN_DIR="$run_dir/tessera" TESSERA_PROXY_PORT="$proxy_port" \
    TESSERA_NODE_PORTS="${node_ports[*]}" TESSERA_CP_PORT="$cp_port" TESSERA_PROFILE=release \
    TESSERA_SKIP_BUILD=1 TESSERA_BIN_DIR="$bin" TESSERA_NODE_SECRET="$secret" TESSERA_WAIT_SECS=30 \
    TESSERA_APPENDONLY="$appendonly" "$repo/deploy/local.sh" up >"$run_dir/up.log" 2>&1 || return 1
  tessera_on=1
}

# The fourth master: started as deploy/local.sh starts a node; it registers as an empty master.
tessera_new_node() {
  local dir=$run_dir/tessera/node4 deadline=$((SECONDS + 30))
  mkdir -p "$dir"
  TESSERA_NODE_SECRET=$secret TESSERA_APPENDONLY=$appendonly "$bin/shard-node" --port "$new_port" \
    --bind 127.0.0.1 --control-plane "$cp_url" --data-dir "$dir" >"$run_dir/tessera/node4.log" 2>&1 </dev/null &
  new_pid=$!
  until "$bin/shard-node" healthcheck --port "$new_port" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  # Registered: the control plane lists it (add-node checks this too).
  until "$bin/clusterctl" --control-plane "$cp_url" nodes 2>/dev/null | grep -q ":$new_port"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  "$bin/clusterctl" --control-plane "$cp_url" add-node "127.0.0.1:$new_port" >>"$run_dir/up.log" 2>&1
}

tessera_down() {
  ((tessera_on)) || return 0
  local name pids=()
  for name in proxy node1 node2 node3 control-plane; do
    [[ -f $run_dir/tessera/$name.pid ]] && pids+=("$(<"$run_dir/tessera/$name.pid")")
  done
  [[ -n $new_pid ]] && pids+=("$new_pid")
  stop_pids "$bin/" "${pids[@]}"
  tessera_on=0 new_pid=
}

redis_start() { # port
  local dir=$run_dir/redis-$1
  mkdir -p "$dir"
  redis-server --port "$1" --bind 127.0.0.1 --dir "$dir" --logfile "$dir/redis.log" --daemonize no \
    --save '' --appendonly "$appendonly" --appendfsync everysec --cluster-enabled yes \
    --cluster-config-file "$dir/nodes.conf" </dev/null >/dev/null 2>&1 &
  redis_pids+=("$!")
  local deadline=$((SECONDS + 30))
  until [[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

redis_up() {
  local port addrs=()
  for port in "${redis_ports[@]}"; do
    redis_start "$port" || return 1
    addrs+=("127.0.0.1:$port")
  done
  timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-yes >"$run_dir/up.log" 2>&1 || return 1
  redis_wait_ok 3
}

# Until every node of the cluster knows N nodes and says cluster_state:ok.
redis_wait_ok() {
  local port deadline=$((SECONDS + 60)) ports=("${redis_ports[@]}")
  (($1 == 4)) && ports+=("$redis_new")
  for port in "${ports[@]}"; do
    until redis-cli -p "$port" cluster info 2>/dev/null | grep -q "cluster_known_nodes:$1" &&
      redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok'; do
      ((SECONDS < deadline)) || return 1
      sleep 0.1
    done
  done
}

redis_new_node() {
  redis_start "$redis_new" || return 1
  timeout 60 redis-cli --cluster add-node "127.0.0.1:$redis_new" "127.0.0.1:${redis_ports[0]}" \
    >>"$run_dir/up.log" 2>&1 || return 1
  redis_wait_ok 4
}

stop_all_on_exit

{
  command=(bench/reshard.sh --rounds "$rounds" --keys "$keys" --value-size "$value_size" --clients "$clients"
    --baseline "$baseline" --appendonly "$appendonly")
  [[ ${systems[*]} == "tessera redis-cluster" ]] || command+=(--systems "'${systems[*]}'")
  echo "command: ${command[*]}"
  run_meta
} | tee "$out/meta.txt"
say "results and logs: $out"

results=$out/results.jsonl
: >"$results"
failed=0
py=(python3 "$repo/bench/reshard.py")
for round in $(seq 1 "$rounds"); do
  for system in "${systems[@]}"; do
    label="$round-$system"
    run_dir=$out/runs/$label
    mkdir -p "$run_dir"
    if [[ $system == tessera ]]; then
      seeds=127.0.0.1:$proxy_port
      masters=$(printf '127.0.0.1:%s,' "${node_ports[@]}" "$new_port")
      auth=(--node-password "$secret")
      new_node=127.0.0.1:$new_port
      move=("$bin/clusterctl" --control-plane "$cp_url" rebalance --use-empty-masters)
      up() { tessera_up && "${py[@]}" load --seeds "$seeds" --keys "$keys" --value-size "$value_size" && tessera_new_node; }
      down() { tessera_down; }
    else
      seeds=$(printf '127.0.0.1:%s,' "${redis_ports[@]}")
      seeds=${seeds%,}
      masters=$(printf '127.0.0.1:%s,' "${redis_ports[@]}" "$redis_new")
      auth=()
      new_node=127.0.0.1:$redis_new
      move=(redis-cli --cluster rebalance "127.0.0.1:${redis_ports[0]}" --cluster-use-empty-masters)
      up() { redis_up && "${py[@]}" load --seeds "$seeds" --keys "$keys" --value-size "$value_size" && redis_new_node; }
      down() { redis_down; }
    fi
    say "$label: starting and loading $keys keys"
    if ! up >>"$run_dir/up.log" 2>&1; then
      say "$label: setup failed ($run_dir/up.log)"
      failed=$((failed + 1))
      down
      continue
    fi
    say "$label: measuring"
    if "${py[@]}" measure --system "$system" --seeds "$seeds" --masters "${masters%,}" \
      --new-node "$new_node" "${auth[@]}" --keys "$keys" --clients "$clients" \
      --baseline "$baseline" --results "$results" --label "$label" -- "${move[@]}" >"$run_dir/measure.log" 2>&1; then
      say "$label: $(tail -n 1 "$run_dir/measure.log")"
    else
      failed=$((failed + 1))
      say "$label: measurement failed: $(tail -n 1 "$run_dir/measure.log")"
    fi
    down
  done
done

{
  echo
  "${py[@]}" summary --results "$results" --out "$out/table.md" >/dev/null
  cat "$out/table.md"
  echo
  cat "$out/meta.txt"
} >"$out/summary.md"
cat "$out/summary.md"
say "summary: $out/summary.md ($failed failed)"
((failed == 0))
