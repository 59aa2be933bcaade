# Shared by bench/failover.sh and bench/reshard.sh (sourced; the caller defines `say`, `die`,
# `repo`, `out` and `build`): tools, binaries, ports and stopping what a benchmark started.

# The tools both need, and the release binaries in $1 (built first unless build=0).
prepare_binaries() {
  local tool b
  for tool in redis-server redis-cli python3; do
    command -v "$tool" >/dev/null 2>&1 || die "missing: $tool (Debian: redis-server redis-tools python3)"
  done
  if ((build)); then
    say "building release binaries (cargo build --release --workspace --bins)"
    (cd "$repo" && cargo build --release --workspace --bins) >"$out/build.log" 2>&1 || die "build failed: $out/build.log"
  fi
  for b in proxy shard-node control-plane clusterctl; do
    [[ -x $1/$b ]] || die "$1/$b is missing (build without --no-build)"
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether PID is still one of ours: its command line names WHAT (a killed process's PID may have
# been reused).
ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"; }

# SIGCONT, SIGTERM, a bounded wait, SIGKILL for any left: only the PIDs given, and only while their
# command line still names WHAT.
stop_pids() {
  local what=$1 pid deadline=$((SECONDS + 15))
  shift
  for pid in "$@"; do
    ours "$pid" "$what" || continue
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$@"; do
    while ours "$pid" "$what" && ((SECONDS < deadline)); do sleep 0.05; done
    if ours "$pid" "$what"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# The run's date, code, Redis version and machine, for the results (after the command line).
run_meta() {
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git: $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$repo" && git diff --quiet HEAD -- proxy shard-node control-plane proto 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "redis: $(redis-server --version)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# The Redis Cluster's servers (their PIDs in redis_pids), stopped.
redis_down() {
  ((${#redis_pids[@]})) || return 0
  stop_pids redis-server "${redis_pids[@]}"
  redis_pids=()
}

# On exit, however it comes, everything started is stopped (the caller's tessera_down, redis_down).
stop_all_on_exit() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

cleanup() {
  local status=$?
  trap - EXIT
  trap "" INT TERM # a second signal must not cut the cleanup short
  tessera_down
  redis_down
  exit "$status"
}
