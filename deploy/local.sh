#!/usr/bin/env bash
# Runs a Tessera cluster as local processes on 127.0.0.1: a control plane, three shard nodes (three
# masters, or with TESSERA_REPLICAS=1 three masters and three replicas) and a proxy, each with its
# log, pid file and data directory under one run directory. With TESSERA_CP_HA=1, a three-member
# etcd and three control planes (one leads, elected through etcd) instead of the one control plane.
#
#   deploy/local.sh up            build, start everything, create the cluster, wait for state ok
#   deploy/local.sh down          stop everything (SIGTERM, so nothing acknowledged is lost)
#   deploy/local.sh status        run directory, each service's pid and port, the cluster state
#   deploy/local.sh stop NAME     stop one service with SIGTERM (--kill: SIGKILL)
#   deploy/local.sh start NAME    start one service again (same data directory, same node id)
#
# NAME is node1, node2, ... (one per node port), proxy, and control-plane (or with TESSERA_CP_HA=1
# etcd1..etcd3 and cp1..cp3). Settings come from the environment:
#   TESSERA_RUN_DIR        run directory (default: .run/local in the repository)
#   TESSERA_PROXY_PORT     proxy RESP port (6379)
#   TESSERA_REPLICAS       replicas per master for a new cluster (0); the default node ports grow to
#                          3 x (replicas + 1): 7000-7005 with TESSERA_REPLICAS=1
#   TESSERA_NODE_PORTS     shard node RESP ports ("7000 7001 7002", or as TESSERA_REPLICAS needs)
#   TESSERA_CP_PORT        control plane gRPC port (50051)
#   TESSERA_CP_HA=1        three control planes sharing a three-member etcd (Debian's etcd-server,
#                          installed by scripts/ensure-tools.sh when missing); nodes, the proxy and
#                          clusterctl get the list of control planes and follow the leader
#   TESSERA_CP_PORTS       with TESSERA_CP_HA=1: the control planes' gRPC ports ("50051 50052 50053")
#   TESSERA_ETCD_PORTS     with TESSERA_CP_HA=1: etcd's client ports ("2379 2479 2579"); each
#                          member's peer port is TESSERA_ETCD_PEER_PORTS' ("2380 2480 2580")
#   TESSERA_ELECTION_TTL   with TESSERA_CP_HA=1: the leader's lease TTL (2s, etcd's minimum: a
#                          takeover must stay under node-timeout, or the masters' write leases,
#                          renewed by the leader, run out meanwhile)
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
ha=${TESSERA_CP_HA:-0}
read -r -a cp_ports <<<"${TESSERA_CP_PORTS:-50051 50052 50053}"
read -r -a etcd_ports <<<"${TESSERA_ETCD_PORTS:-2379 2479 2579}"
read -r -a etcd_peer_ports <<<"${TESSERA_ETCD_PEER_PORTS:-2380 2480 2580}"
election_ttl=${TESSERA_ELECTION_TTL:-2s}
if [[ $ha == 1 ]]; then
  cp_url=$(for port in "${cp_ports[@]}"; do printf 'http://127.0.0.1:%s,' "$port"; done)
  cp_url=${cp_url%,}
  etcd_urls=$(for port in "${etcd_ports[@]}"; do printf 'http://127.0.0.1:%s,' "$port"; done)
  etcd_urls=${etcd_urls%,}
else
  cp_url=http://127.0.0.1:$cp_port
fi

say() { printf '%s\n' "$*"; }
die() { printf 'local.sh: %s\n' "$*" >&2; exit 1; }

control_planes() {
  if [[ $ha == 1 ]]; then
    for i in "${!etcd_ports[@]}"; do printf 'etcd%d\n' $((i + 1)); done
    for i in "${!cp_ports[@]}"; do printf 'cp%d\n' $((i + 1)); done
  else
    printf '%s\n' control-plane
  fi
}

services() { control_planes; for i in "${!node_ports[@]}"; do printf 'node%d\n' $((i + 1)); done; printf '%s\n' proxy; }

index_of() { # index_of node3 node 3 -> 2 (prefix, count)
  local n=${1#"$2"}
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= $3)) || die "unknown service: $1"
  echo $((n - 1))
}

node_index() { index_of "$1" node ${#node_ports[@]}; }

port_of() {
  case $1 in
    control-plane) echo "$cp_port" ;;
    proxy) echo "$proxy_port" ;;
    etcd*) echo "${etcd_ports[$(index_of "$1" etcd ${#etcd_ports[@]})]}" ;;
    cp*) echo "${cp_ports[$(index_of "$1" cp ${#cp_ports[@]})]}" ;;
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

# Whether process $1 exists and is not a zombie: a killed service's process stays a zombie until
# whatever adopted it reaps it, which some init processes do late or never, and a zombie runs no
# more (a `start` right after `stop --kill` must not take it for running).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

running_pid() { # prints the pid when the service runs
  local file pid
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  alive "$pid" || return 1
  echo "$pid"
}

command_of() {
  local port
  port=$(port_of "$1")
  case $1 in
    control-plane)
      echo "$bin_dir/control-plane --listen 127.0.0.1:$port --data-dir $run_dir/control-plane --node-timeout $node_timeout" ;;
    cp*)
      echo "$bin_dir/control-plane --listen 127.0.0.1:$port --data-dir $run_dir/$1 --node-timeout $node_timeout --store etcd --etcd-endpoints $etcd_urls --etcd-prefix /tessera/local --election-ttl $election_ttl" ;;
    etcd*)
      local i members=() peer
      for i in "${!etcd_ports[@]}"; do members+=("etcd$((i + 1))=http://127.0.0.1:${etcd_peer_ports[$i]}"); done
      peer=http://127.0.0.1:${etcd_peer_ports[$(index_of "$1" etcd ${#etcd_ports[@]})]}
      # On an existing data directory (a restart) etcd ignores the --initial-* flags.
      echo "etcd --name $1 --data-dir $run_dir/$1 --listen-client-urls http://127.0.0.1:$port --advertise-client-urls http://127.0.0.1:$port --listen-peer-urls $peer --initial-advertise-peer-urls $peer --initial-cluster $(IFS=,; echo "${members[*]}") --initial-cluster-state new --initial-cluster-token tessera-local" ;;
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
    control-plane | cp*) "$bin_dir/clusterctl" --control-plane "http://127.0.0.1:$port" nodes ;;
    etcd*) etcd_healthy "$port" ;;
    proxy) "$bin_dir/proxy" healthcheck --address "127.0.0.1:$port" ;;
    node*) "$bin_dir/shard-node" healthcheck --port "$port" ;;
  esac
}

# Whether the etcd member on port $1 answers /health with true (it has a raft leader and serves).
etcd_healthy() (
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  [[ $(timeout 2 cat <&3) == *'"health":"true"'* ]]
)

# Whether the etcd member on port $1 accepts connections (it cannot be healthy before a quorum
# of members runs).
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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
  if [[ ${2:-} == --no-wait ]]; then
    wait_for "$name" listening "$(port_of "$name")"
  else
    wait_for "$name" ready "$name"
  fi
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
  while alive "$pid"; do
    ((SECONDS < deadline)) || die "$name (pid $pid) did not exit after SIG$signal"
    sleep 0.05
  done
  rm -f "$(pid_file "$name")"
  say "$name stopped (SIG$signal)"
}

# grep reads all of it: with -q it would stop at the match, and under pipefail clusterctl's failed
# write of the rest (the control planes' section) would fail the check.
cluster_ok() { "$bin_dir/clusterctl" --control-plane "$cp_url" info | grep '^cluster_state:ok' >/dev/null; }

cluster_created() { "$bin_dir/clusterctl" --control-plane "$cp_url" info | grep '^cluster_slots_assigned:16384' >/dev/null; }

build() {
  [[ ${TESSERA_SKIP_BUILD:-0} == 1 ]] && return
  local flag=()
  [[ $profile == release ]] && flag=(--release)
  [[ $profile == release || $profile == debug ]] || flag=(--profile "$profile")
  (cd "$repo" && cargo build "${flag[@]}" --bins)
}

up() {
  build
  if [[ $ha == 1 ]]; then
    command -v etcd >/dev/null || "$repo/scripts/ensure-tools.sh"
    # A member is healthy only once a quorum runs: start them all, then wait.
    local member
    for member in $(services | grep '^etcd'); do start_service "$member" --no-wait; done
    for member in $(services | grep '^etcd'); do wait_for "$member healthy" ready "$member"; done
  fi
  while read -r name; do start_service "$name"; done < <(services | grep -v '^etcd')
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
  if "$bin_dir/clusterctl" --control-plane "$cp_url" info >"$run_dir/info.txt" 2>/dev/null; then
    grep -E '^cluster_(state|slots_assigned|known_nodes):' "$run_dir/info.txt" || true
    if [[ $ha == 1 ]]; then sed -n '/^# Control planes/,$p' "$run_dir/info.txt"; fi
  fi
}

down() {
  local name
  # The proxy first, so clients stop before the data does; the control plane last, etcd after it.
  for name in proxy $(services | grep '^node') $(control_planes | grep -v '^etcd') $(control_planes | grep '^etcd'); do
    stop_service "$name"
  done
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
  *) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
