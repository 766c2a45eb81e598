#!/usr/bin/env bash
# bellhop's RSS idle and with 1,000 open WebSockets (bench/ws_memory.rs), release build.
# Not part of the test suite.
#
#   bench/ws-memory.sh          # 1000 sockets
#   bench/ws-memory.sh 5000     # more (raises the open-file limit to its hard limit)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building release binaries..." >&2
cargo build --release --quiet --bin bellhop --example ws-memory
target/release/examples/ws-memory target/release/bellhop "${1:-1000}"
