#!/usr/bin/env bash
# Requests/s straight to a backend and through bellhop, measured in one run on this
# machine with wrk, side by side with their ratio. Not part of the test suite.
#
#   bench/proxy-vs-direct.sh                         # 10 s each, 64 connections
#   DURATION=30s CONNECTIONS=256 bench/proxy-vs-direct.sh
#   LOG_LEVEL=info bench/proxy-vs-direct.sh          # with one access-log line per request
#
# wrk, the backend (bench/backend.rs) and bellhop share this machine's cores, so the
# figures are for comparing the two paths with each other, not absolute capacity.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
LOG_LEVEL=${LOG_LEVEL:-warn}

if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq wrk
fi

echo "building release binaries..." >&2
cargo build --release --quiet --bin bellhop --example bench-backend

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

wait_for_line() { # file pattern
    for _ in $(seq 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

target/release/examples/bench-backend >"$tmp/backend.out" &
pids+=($!)
wait_for_line "$tmp/backend.out" listening
backend=$(awk '/listening/ {print $2; exit}' "$tmp/backend.out")

# A port for bellhop: at --log-level warn it does not log the one it bound.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/bellhop proxy --from "http://127.0.0.1:$port" --to "$backend" \
    --log-level "$LOG_LEVEL" 2>"$tmp/bellhop.err" &
pids+=($!)
for _ in $(seq 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.05
done
curl -fsS -o /dev/null "http://127.0.0.1:$port/" || { cat "$tmp/bellhop.err" >&2; exit 1; }

run_wrk() { # url -> "requests/s avg-latency"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1" >"$tmp/wrk.out"
    if grep -qE 'Non-2xx|Socket errors' "$tmp/wrk.out"; then
        echo "wrk reported errors for $1:" >&2; cat "$tmp/wrk.out" >&2
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out")
    lat=$(awk '/^    Latency/ {print $2; exit}' "$tmp/wrk.out")
    p99=$(awk '/^ +99%/ {print $2; exit}' "$tmp/wrk.out")
    echo "$rps $lat $p99"
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores; bellhop --log-level $LOG_LEVEL" >&2
read -r direct_rps direct_lat direct_p99 < <(run_wrk "http://$backend/")
read -r proxied_rps proxied_lat proxied_p99 < <(run_wrk "http://127.0.0.1:$port/")

printf '\n%-18s %14s %12s %12s\n' "" "requests/s" "avg latency" "p99 latency"
printf '%-18s %14.0f %12s %12s\n' "direct" "$direct_rps" "$direct_lat" "$direct_p99"
printf '%-18s %14.0f %12s %12s\n' "through bellhop" "$proxied_rps" "$proxied_lat" "$proxied_p99"
awk -v p="$proxied_rps" -v d="$direct_rps" 'BEGIN { printf "%-18s %14.2f\n", "ratio", p / d }'
