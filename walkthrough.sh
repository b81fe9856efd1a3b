#!/usr/bin/env bash
# Runs the federation walk-through: discovery and two peers as separate
# processes on this machine, narrated step by step.
set -euo pipefail
cd "$(dirname "$0")"
# Say so before building: the first release build is silent for about a
# minute (--quiet), which would otherwise look like a hang.
echo "building the release binaries (about a minute the first time)…"
started=$SECONDS
cargo build --release --quiet --bins --example walkthrough
echo "built in $((SECONDS - started)) s"
exec ./target/release/examples/walkthrough
