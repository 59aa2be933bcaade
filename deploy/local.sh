#!/usr/bin/env bash
# Runs a Tessera cluster as local processes on 127.0.0.1: a control plane, three shard nodes (three
# masters, or with TESSERA_REPLICAS=1 three masters and three replicas) and a proxy, each with its
# log, pid file and data directory under one run directory.
#
#   deploy/local.sh up            build, start everything, create the cluster, wait for state ok
#   deploy/local.sh down          stop everything (SIGTERM, so nothing acknowledged is lost)
#   deploy/local.sh status        run directory, each service's pid and port, the cluster state
#   deploy/local.sh stop NAME     stop one service with SIGTERM (--kill: SIGKILL)
#   deploy/local.sh start NAME    start one service again (same data directory, same node id)
#
# NAME is node1, node2, ... (one per node port), proxy or control-plane. Settings come from the
# environment:
#   TESSERA_RUN_DIR        run directory (default: .run/local in the repository)
#   TESSERA_PROXY_PORT     proxy RESP port (6379)
#   TESSERA_REPLICAS       replicas per master for a new cluster (0); the default node ports grow to
#                          3 x (replicas + 1): 7000-7005 with TESSERA_REPLICAS=1
#   TESSERA_NODE_PORTS     shard node RESP ports ("7000 7001 7002", or as TESSERA_REPLICAS needs)
#   TESSERA_CP_PORT        control plane gRPC port (50051)
#   TESSERA_NODE_TIMEOUT   node-timeout for a new cluster (3s here; Redis's default is 15s, shorter
#                          makes failures visible sooner on one machine)
#   TESSERA_PROFILE        cargo profile to build and run (release)
#   TESSERA_SKIP_BUILD=1   use the binaries already built (the tests build once)
#   TESSERA_BIN_DIR        where the binaries are (default: cargo's target dir for the profile)
#   TESSERA_WAIT_SECS      how long `up` and `start` wait for readiness (60)
#   TESSERA_NODE_SECRET    the cluster's node secret: shard nodes refuse clients that have not sent
#                          AUTH <secret>, and the proxy sends it on its backend connections
#                          (default: generated once into <run directory>/node-secret; set it empty
#                          to run the nodes without one). Talk to a node directly with
#                          redis-cli -a "$(cat <run directory>/node-secret)" -p 7000
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run_dir=${TESSERA_RUN_DIR:-$repo/.run/local}
proxy_port=${TESSERA_PROXY_PORT:-6379}
replicas=${TESSERA_REPLICAS:-0}
[[ $replicas =~ ^[0-9]+$ ]] || { echo "TESSERA_REPLICAS must be a number, not '$replicas'" >&2; exit 2; }
read -r -a node_ports <<<"${TESSERA_NODE_PORTS:-$(seq -s ' ' 7000 $((7000 + 3 * (replicas + 1) - 1)))}"
cp_port=${TESSERA_CP_PORT:-50051}
node_timeout=${TESSERA_NODE_TIMEOUT:-3s}
profile=${TESSERA_PROFILE:-release}
wait_secs=${TESSERA_WAIT_SECS:-60}
bin_dir=${TESSERA_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/$profile}
cp_url=http://127.0.0.1:$cp_port

say() { printf '%s\n' "$*"; }
die() { printf 'local.sh: %s\n' "$*" >&2; exit 1; }

services() { printf '%s\n' control-plane; for i in "${!node_ports[@]}"; do printf 'node%d\n' $((i + 1)); done; printf '%s\n' proxy; }

node_index() { # node3 -> 2
  local n=${1#node}
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= ${#node_ports[@]})) || die "unknown service: $1"
  echo $((n - 1))
}

port_of() {
  case $1 in
    control-plane) echo "$cp_port" ;;
    proxy) echo "$proxy_port" ;;
    node*) echo "${node_ports[$(node_index "$1")]}" ;;
    *) die "unknown service: $1" ;;
  esac
}

pid_file() { echo "$run_dir/$1.pid"; }

secret_file() { echo "$run_dir/node-secret"; }

node_secret() { # TESSERA_NODE_SECRET when set (even empty), else the run directory's, made once
  if [[ -n ${TESSERA_NODE_SECRET+set} ]]; then
    printf '%s' "$TESSERA_NODE_SECRET"
    return
  fi
  local file
  file=$(secret_file)
  if [[ ! -s $file ]]; then
    mkdir -p "$run_dir"
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

running_pid() { # prints the pid when the service runs
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

command_of() {
  local port
  port=$(port_of "$1")
  case $1 in
    control-plane)
      echo "$bin_dir/control-plane --listen 127.0.0.1:$port --data-dir $run_dir/control-plane --node-timeout $node_timeout" ;;
    proxy)
      echo "$bin_dir/proxy --port $port --bind 127.0.0.1 --control-plane $cp_url" ;;
    node*)
      echo "$bin_dir/shard-node --port $port --bind 127.0.0.1 --control-plane $cp_url --data-dir $run_dir/$1" ;;
  esac
}

# Polls `check` (a command) until it succeeds or the wait runs out.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + wait_secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "gave up waiting for $what after ${wait_secs}s (logs: $run_dir)"
    sleep 0.1
  done
}

ready() { # the service answers on its port
  local port
  port=$(port_of "$1")
  case $1 in
    control-plane) "$bin_dir/clusterctl" --control-plane "$cp_url" info ;;
    proxy) "$bin_dir/proxy" healthcheck --address "127.0.0.1:$port" ;;
    node*) "$bin_dir/shard-node" healthcheck --port "$port" ;;
  esac
}

start_service() {
  local name=$1 pid
  if pid=$(running_pid "$name"); then
    say "$name already running (pid $pid)"
    return
  fi
  mkdir -p "$run_dir"
  # The secret goes through the environment, not the command line (ps shows that).
  local secret
  secret=$(node_secret)
  # shellcheck disable=SC2046 # the command line is split on purpose
  TESSERA_NODE_SECRET=$secret nohup $(command_of "$name") >>"$run_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
  wait_for "$name" ready "$name"
  say "$name started (pid $(running_pid "$name"), port $(port_of "$name"))"
}

stop_service() {
  local name=$1 signal=${2:-TERM} pid
  if ! pid=$(running_pid "$name"); then
    say "$name is not running"
    rm -f "$(pid_file "$name")"
    return
  fi
  kill "-$signal" "$pid"
  local deadline=$((SECONDS + wait_secs))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$name (pid $pid) did not exit after SIG$signal"
    sleep 0.05
  done
  rm -f "$(pid_file "$name")"
  say "$name stopped (SIG$signal)"
}

cluster_ok() { "$bin_dir/clusterctl" --control-plane "$cp_url" info | grep -q '^cluster_state:ok'; }

cluster_created() { "$bin_dir/clusterctl" --control-plane "$cp_url" info | grep -q '^cluster_slots_assigned:16384'; }

build() {
  [[ ${TESSERA_SKIP_BUILD:-0} == 1 ]] && return
  local flag=()
  [[ $profile == release ]] && flag=(--release)
  [[ $profile == release || $profile == debug ]] || flag=(--profile "$profile")
  (cd "$repo" && cargo build "${flag[@]}" --bins)
}

up() {
  build
  while read -r name; do start_service "$name"; done < <(services)
  if ! cluster_created; then
    local addresses=()
    for port in "${node_ports[@]}"; do addresses+=("127.0.0.1:$port"); done
    "$bin_dir/clusterctl" --control-plane "$cp_url" create "${addresses[@]}" --replicas "$replicas" --yes \
      | tee "$run_dir/create.log"
  fi
  wait_for "cluster_state:ok" cluster_ok
  status
}

status() {
  say "run directory: $run_dir"
  local name pid
  while read -r name; do
    if pid=$(running_pid "$name"); then
      printf '%-14s running  pid %-8s port %s\n' "$name" "$pid" "$(port_of "$name")"
    else
      printf '%-14s stopped           port %s\n' "$name" "$(port_of "$name")"
    fi
  done < <(services)
  if [[ -n $(node_secret) ]]; then
    say "node secret: $(if [[ -n ${TESSERA_NODE_SECRET+set} ]]; then echo 'from TESSERA_NODE_SECRET'; else secret_file; fi) (redis-cli -a SECRET -p PORT for a node)"
  fi
  if running_pid control-plane >/dev/null; then
    "$bin_dir/clusterctl" --control-plane "$cp_url" info | grep -E '^cluster_(state|slots_assigned|known_nodes):' || true
  fi
}

down() {
  local name
  # The proxy first, so clients stop before the data does; the control plane last.
  for name in proxy $(services | grep '^node') control-plane; do stop_service "$name"; done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  stop)
    [[ -n ${2:-} ]] || die "usage: local.sh stop NAME [--kill]"
    port_of "$2" >/dev/null
    if [[ ${3:-} == --kill ]]; then stop_service "$2" KILL; else stop_service "$2" TERM; fi ;;
  start)
    [[ -n ${2:-} ]] || die "usage: local.sh start NAME"
    port_of "$2" >/dev/null
    start_service "$2" ;;
  *) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
