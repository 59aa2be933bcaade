#!/usr/bin/env bash
# Builds static release binaries and the `tessera:local` image from them (FROM scratch: no base image
# is pulled). After it, `docker-compose up -d` starts the cluster.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${TESSERA_IMAGE:-tessera:local}
target=x86_64-unknown-linux-gnu

cd "$repo"
# A statically linked glibc binary still resolves names (hosts file and DNS, as Docker's embedded
# DNS needs) in an empty root filesystem.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$target" --bins

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin" "$context/data"
for binary in control-plane clusterctl shard-node proxy; do
  cp "${CARGO_TARGET_DIR:-target}/$target/release/$binary" "$context/bin/"
  strip --strip-debug "$context/bin/$binary"
done
cp deploy/docker/Dockerfile "$context/"
docker build --quiet -t "$image" "$context" >/dev/null
docker image ls "$image" --format 'built {{.Repository}}:{{.Tag}} ({{.Size}})'
