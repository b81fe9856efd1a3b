#!/usr/bin/env bash
# Runs the federation walk-through: discovery and two peers as separate
# processes on this machine, narrated step by step.
set -euo pipefail
cd "$(dirname "$0")"
# Say so before building: the first release build is silent for two or
# three minutes on a 2-core machine (--quiet), which would otherwise look
# like a hang.
echo "building the release binaries (two or three minutes the first time on 2 cores)…"
started=$SECONDS
cargo build --release --quiet --bins --example walkthrough
echo "built in $((SECONDS - started)) s"
exec ./target/release/examples/walkthrough
