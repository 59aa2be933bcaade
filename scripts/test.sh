#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs the Redis tools the tests drive, checks
# formatting and lints, builds the binaries once (release), then runs every test: unit tests, each
# crate's socket tests, and the end-to-end tests in e2e/ that start whole clusters (in-process, as
# processes, and in containers). Everything uses the release profile, so clippy, the build and the
# tests share their build scripts and proc-macros instead of compiling them twice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-tools.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --release"
cargo clippy --release --workspace --all-targets -- -D warnings

echo "== cargo build --release (binaries the end-to-end tests start)"
cargo build --release --workspace --bins

echo "== cargo test --release (every test binary runs; all failures are listed at the end)"
cargo test --release --workspace --no-fail-fast -- "$@"
