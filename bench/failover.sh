#!/usr/bin/env bash
# The failover benchmark of issue 14: how long a master's slots refuse writes after the master
# fails, and what the rest of the cluster sees meanwhile, for
#   tessera        deploy/local.sh with TESSERA_REPLICAS=1 (a control plane, three masters, three
#                  replicas, a proxy), measured through the proxy
#   redis-cluster  six redis-servers made into three masters with one replica each by
#                  redis-cli --cluster create --cluster-replicas 1, measured with a cluster client
# under two faults of the master that serves slot 0: SIGKILL (the process is gone) and SIGSTOP (it
# hangs; SIGCONT once measured), at each node-timeout. Every run starts a fresh cluster, waits until
# it is healthy with every replica in sync (WAIT 1), starts two writers (bench/failover.py: the same
# cluster-aware client for both systems, 200 ms socket timeout, retry after 5 ms), one on the
# victim's slots and one on the other masters' slots, sends the signal, and records the time to the
# first successful SET on the lost slots and the other writer's errors until 1 s after that. The
# summary gives the median (min-max) over the runs. Persistence is off on both (Tessera
# TESSERA_APPENDONLY=no, redis-server --save '' --appendonly no); Tessera runs with a node secret.
# See docs/benchmarks.md.
#
#   bench/failover.sh            full run: 5 runs of each system x fault x node-timeout (2 s, 5 s);
#                                about 10-15 minutes on 2 cores
#   bench/failover.sh --quick    smoke run: 1 run of each system x fault at node-timeout 2 s
#
# Options:
#   --runs N               runs of each combination (default 5; 1 with --quick)
#   --node-timeouts "MS.." node-timeouts in ms (default "2000 5000"; "2000" with --quick)
#   --systems "S.."        tessera and/or redis-cluster (default both)
#   --faults "F.."         kill and/or stop (default both)
#   --socket-timeout MS    the writers' socket timeout (default 200)
#   --no-build             use the release binaries already in target/release (default: cargo build
#                          --release --workspace --bins first, a no-op when they are fresh)
#   --out DIR              where logs, data and results go (default: .run/bench-failover/<UTC time>)
# Environment: BENCH_PORT_BASE (default 27400): Tessera uses BASE+0 (proxy), BASE+1..6 (nodes),
# BASE+7 (control plane); Redis Cluster BASE+11..16; the cluster buses are those +10000; all on
# 127.0.0.1. Other TESSERA_* settings of the nodes and proxy pass through deploy/local.sh. Every
# process started here is stopped by its PID on exit (a SIGSTOPped one gets SIGCONT first).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=
timeouts=
systems="tessera redis-cluster"
faults="kill stop"
socket_timeout=200
quick=0
build=1
out=
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --node-timeouts) timeouts=${2:?--node-timeouts needs a list of ms}; shift ;;
    --systems) systems=${2:?--systems needs a list}; shift ;;
    --faults) faults=${2:?--faults needs a list}; shift ;;
    --socket-timeout) socket_timeout=${2:?--socket-timeout needs a number of ms}; shift ;;
    --no-build) build=0 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "failover.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  runs=${runs:-1} timeouts=${timeouts:-2000}
else
  runs=${runs:-5} timeouts=${timeouts:-2000 5000}
fi
read -r -a timeouts <<<"$timeouts"
read -r -a systems <<<"$systems"
read -r -a faults <<<"$faults"
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "failover.sh: --runs must be a positive number" >&2; exit 2; }
for t in "${timeouts[@]}"; do [[ $t =~ ^[1-9][0-9]*$ ]] || { echo "failover.sh: node-timeout '$t' is not a number of ms" >&2; exit 2; }; done
[[ $socket_timeout =~ ^[1-9][0-9]*$ ]] || { echo "failover.sh: --socket-timeout must be a number of ms" >&2; exit 2; }
for s in "${systems[@]}"; do [[ $s == tessera || $s == redis-cluster ]] || { echo "failover.sh: unknown system '$s'" >&2; exit 2; }; done
for f in "${faults[@]}"; do [[ $f == kill || $f == stop ]] || { echo "failover.sh: unknown fault '$f'" >&2; exit 2; }; done

out=${out:-$repo/.run/bench-failover/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

base=${BENCH_PORT_BASE:-27400}
tessera_proxy_port=$base
tessera_node_ports=()
for i in 1 2 3 4 5 6; do tessera_node_ports+=("$((base + i))"); done
tessera_cp_port=$((base + 7))
redis_ports=()
for i in 1 2 3 4 5 6; do redis_ports+=("$((base + 10 + i))"); done

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'failover.sh: %s\n' "$*" >&2; exit 1; }

# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
prepare_binaries "$repo/target/release"

for port in "$tessera_proxy_port" "${tessera_node_ports[@]}" "$tessera_cp_port" "${redis_ports[@]}"; do
  port_free "$port" || die "port $port is taken (set BENCH_PORT_BASE)"
done
for port in "${tessera_node_ports[@]}" "${redis_ports[@]}"; do
  port_free $((port + 10000)) || die "port $((port + 10000)) (a cluster bus) is taken (set BENCH_PORT_BASE)"
done

# --- the systems, one run at a time -----------------------------------------------------------------
secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
run_dir=            # the current run's directory
tessera_env=()      # the current Tessera cluster's deploy/local.sh environment
redis_pids=()       # the current Redis Cluster's servers
node_pids=()        # PORT=PID of the current cluster's nodes, for the measurement

tessera_up() { # node-timeout in ms
  tessera_env=(
    TESSERA_RUN_DIR="$run_dir/tessera"
    TESSERA_PROXY_PORT="$tessera_proxy_port"
    TESSERA_NODE_PORTS="${tessera_node_ports[*]}"
    TESSERA_CP_PORT="$tessera_cp_port"
    TESSERA_NODE_TIMEOUT="$1ms"
    TESSERA_REPLICAS=1
    TESSERA_PROFILE=release
    TESSERA_SKIP_BUILD=1
    TESSERA_BIN_DIR="$repo/target/release"
    TESSERA_NODE_SECRET="$secret"
    TESSERA_WAIT_SECS=30
    TESSERA_APPENDONLY=no
  )
  env "${tessera_env[@]}" "$repo/deploy/local.sh" up >"$run_dir/up.log" 2>&1 || return 1
  node_pids=()
  local i
  for i in "${!tessera_node_ports[@]}"; do
    node_pids+=("${tessera_node_ports[$i]}=$(<"$run_dir/tessera/node$((i + 1)).pid")")
  done
}

# By the PIDs deploy/local.sh recorded, all at once (local.sh down stops one service after the
# other, each waited for until reaped: seconds per service on a host whose init reaps slowly).
tessera_down() {
  ((${#tessera_env[@]})) || return 0
  local name pids=()
  for name in proxy node1 node2 node3 node4 node5 node6 control-plane; do
    [[ -f $run_dir/tessera/$name.pid ]] && pids+=("$(<"$run_dir/tessera/$name.pid")")
  done
  stop_pids "$repo/target/release/" "${pids[@]}"
  tessera_env=()
}

redis_up() { # node-timeout in ms
  local port dir addrs=()
  redis_pids=() node_pids=()
  for port in "${redis_ports[@]}"; do
    dir=$run_dir/redis-$port
    mkdir -p "$dir"
    # repl-diskless-sync-delay 0: the replicas' first sync starts at once (setup time only).
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --logfile "$dir/redis.log" \
      --daemonize no --save '' --appendonly no --cluster-enabled yes \
      --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout "$1" \
      --repl-diskless-sync-delay 0 </dev/null >/dev/null 2>&1 &
    redis_pids+=("$!")
    disown "$!" # no "Killed" line from bash when the fault is SIGKILL
    node_pids+=("$port=$!")
    addrs+=("127.0.0.1:$port")
  done
  local deadline=$((SECONDS + 30))
  for port in "${redis_ports[@]}"; do
    until [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; do
      ((SECONDS < deadline)) || return 1
      sleep 0.1
    done
  done
  timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$run_dir/up.log" 2>&1
}

stop_all_on_exit

# --- the runs ---------------------------------------------------------------------------------------
{
  command=(bench/failover.sh --runs "$runs" --node-timeouts "'${timeouts[*]}'")
  ((quick)) && command+=(--quick)
  [[ ${systems[*]} == "tessera redis-cluster" ]] || command+=(--systems "'${systems[*]}'")
  [[ ${faults[*]} == "kill stop" ]] || command+=(--faults "'${faults[*]}'")
  ((socket_timeout == 200)) || command+=(--socket-timeout "$socket_timeout")
  echo "command: ${command[*]}"
  run_meta
} | tee "$out/meta.txt"
say "results and logs: $out"

results=$out/results.jsonl
: >"$results"
total=$((runs * ${#timeouts[@]} * ${#faults[@]} * ${#systems[@]}))
n=0 failed=0
# Runs interleave (run, node-timeout, fault, system) so that drift on a shared machine spreads over
# every combination.
for run in $(seq 1 "$runs"); do
  for nt in "${timeouts[@]}"; do
    for fault in "${faults[@]}"; do
      for system in "${systems[@]}"; do
        n=$((n + 1))
        label="$run-$system-$fault-${nt}ms"
        run_dir=$out/runs/$label
        mkdir -p "$run_dir"
        measure=(python3 "$repo/bench/failover.py" measure --system "$system" --fault "$fault"
          --node-timeout "$nt" --socket-timeout "$socket_timeout" --results "$results" --label "$label")
        if [[ $system == tessera ]]; then
          tessera_up "$nt" || { say "[$n/$total] $label: deploy/local.sh up failed ($run_dir)"; tessera_down; failed=$((failed + 1)); continue; }
          measure+=(--nodes "${tessera_node_ports[*]}" --password "$secret" --writers "$tessera_proxy_port")
        else
          redis_up "$nt" || { say "[$n/$total] $label: Redis Cluster setup failed ($run_dir)"; redis_down; failed=$((failed + 1)); continue; }
          measure+=(--nodes "${redis_ports[*]}")
        fi
        measure+=(--pids "$(IFS=,; echo "${node_pids[*]}")")
        if "${measure[@]}" >"$run_dir/measure.log" 2>&1; then
          say "[$n/$total] $label: $(tail -n 1 "$run_dir/measure.log")"
        else
          failed=$((failed + 1))
          say "[$n/$total] $label: measurement failed: $(tail -n 1 "$run_dir/measure.log")"
        fi
        if [[ $system == tessera ]]; then tessera_down; else redis_down; fi
      done
    done
  done
done

{
  echo
  python3 "$repo/bench/failover.py" summary --results "$results" --out "$out/table.md" >/dev/null
  cat "$out/table.md"
  echo
  cat "$out/meta.txt"
} >"$out/summary.md"
cat "$out/summary.md"
say "summary: $out/summary.md ($failed of $total runs failed)"
((failed == 0))
