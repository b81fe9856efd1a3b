#!/usr/bin/env bash
# Runs the federation walk-through: discovery and two peers as separate
# processes on this machine, narrated step by step.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet --bins --example walkthrough
exec ./target/release/examples/walkthrough
