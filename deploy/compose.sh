#!/usr/bin/env bash
# The compose deployment in one command.
#   deploy/compose.sh up     build the image, `docker-compose up -d`, wait for cluster_state:ok
#   deploy/compose.sh down   `docker-compose down -v` (removes the volumes: the data goes too)
# docker-compose's own commands (ps, logs, stop, start, kill) work as usual in the repository.
# TESSERA_REPLICAS=1 runs the six-node layout (three masters, three replicas) by adding
# docker-compose.replicas.yml; for docker-compose's own commands, export the same
# COMPOSE_FILE=docker-compose.yml:docker-compose.replicas.yml.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
wait_secs=${TESSERA_WAIT_SECS:-120}
case ${TESSERA_REPLICAS:-0} in
  0) ;;
  1) export COMPOSE_FILE=docker-compose.yml:docker-compose.replicas.yml ;;
  *) echo "compose.sh: TESSERA_REPLICAS must be 0 or 1 (the compose files have six nodes)" >&2; exit 2 ;;
esac

cluster_ok() {
  docker-compose exec -T control-plane /usr/local/bin/clusterctl info 2>/dev/null | grep '^cluster_state:ok' >/dev/null
}

case ${1:-} in
  up)
    deploy/build-images.sh
    docker-compose up -d
    deadline=$((SECONDS + wait_secs))
    until cluster_ok; do
      if ((SECONDS >= deadline)); then
        echo "compose.sh: no cluster_state:ok after ${wait_secs}s; see docker-compose logs" >&2
        exit 1
      fi
      sleep 0.5
    done
    docker-compose exec -T control-plane /usr/local/bin/clusterctl info | head -3
    docker-compose ps
    ;;
  down) docker-compose down -v ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
