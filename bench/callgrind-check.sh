#!/usr/bin/env bash
# CPU regression check CI can afford (about a minute): instructions per proxied
# request, counted by callgrind (deterministic, unlike wall-clock figures), compared
# with the committed bench/callgrind-baseline.txt.
#
#   bench/callgrind-check.sh              # build release, measure, compare
#   UPDATE=1 bench/callgrind-check.sh     # measure and write the new baseline
#   BUILD=0 bench/callgrind-check.sh      # use the existing target/release binaries
#
# How: bench-backend runs natively; `bellhop proxy` (plain HTTP/1.1, logging off)
# runs under `valgrind --tool=callgrind`. One curl sends WARMUP keep-alive requests
# on one connection; the counters are zeroed (callgrind_control -z); a second curl
# sends REQUESTS more on one connection; the counters are dumped (callgrind_control
# -d). The total Ir of all bellhop threads divided by REQUESTS is the figure:
# start-up and warm-up stay out of it.
#
# Settings (environment): REQUESTS (2000), WARMUP (200), TOLERANCE in % (15),
# UPDATE=1, BUILD=0, INSTALL=1 (apt-get install valgrind/curl when missing), KEEP=1.
# Exit codes: 0 within tolerance (or baseline updated), 1 regression beyond
# TOLERANCE, 2 the measurement itself failed, 3 tools missing.
# The baseline depends on the compiler and dependency versions: after upgrading
# them (or a deliberate trade-off), rerun with UPDATE=1 and commit the file.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DIE_CODE=2

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
TOLERANCE=${TOLERANCE:-15}
BASELINE=bench/callgrind-baseline.txt

require_commands valgrind:valgrind callgrind_control:valgrind curl:curl python3:python3
trap 'echo "callgrind-check: measurement failed" >&2; exit 2' ERR

if [[ ${BUILD:-1} == 1 ]]; then
    note "building release binaries (bellhop, bench-backend)"
    cargo build --release --quiet --bin bellhop --example bench-backend
fi
start_backend ""
port=$(free_port)
url="http://127.0.0.1:$port/"
spawn "$BENCH_TMP/bellhop.log" valgrind --tool=callgrind --callgrind-out-file="$BENCH_TMP/callgrind.out.%p" \
    target/release/bellhop proxy --from "http://127.0.0.1:$port" --to "$BACKEND" --log-level error
bellhop=$SPAWNED
wait_until 120 curl -fsS -o /dev/null "$url" || { cat "$BENCH_TMP/bellhop.log" >&2; die "bellhop did not answer under valgrind"; }

# batch N — N keep-alive GETs on one connection; fails unless all of them got a 2xx.
batch() {
    local i
    for ((i = 0; i < $1; i++)); do printf 'url = "%s"\n' "$url"; done >"$BENCH_TMP/urls"
    curl -sSf --config "$BENCH_TMP/urls" -w '%{http_code}\n' -o /dev/null >"$BENCH_TMP/codes"
    (($(grep -c '^2' "$BENCH_TMP/codes") == $1)) || die "not every request succeeded"
}

batch "$WARMUP"
callgrind_control -z "$bellhop" >/dev/null
batch "$REQUESTS"
callgrind_control -d "$bellhop" >/dev/null
stop "$bellhop"

dump=$(ls "$BENCH_TMP"/callgrind.out."$bellhop".* 2>/dev/null | head -1)
[[ -n $dump ]] || die "callgrind wrote no dump"
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
per=$((ir / REQUESTS))
echo "bellhop: $per instructions (Ir) per proxied HTTP/1.1 keep-alive request ($REQUESTS requests, all threads)"

if [[ ${UPDATE:-} == 1 ]]; then
    {
        echo "# Ir per proxied HTTP/1.1 keep-alive request, written by UPDATE=1 bench/callgrind-check.sh"
        echo "# on $(date -u +%F), $(rustc --version), commit $(git describe --always --dirty)"
        echo "ir_per_request $per"
    } >"$BASELINE"
    echo "wrote $BASELINE"
    exit 0
fi
base=$(awk '$1 == "ir_per_request" {print $2}' "$BASELINE")
[[ -n $base ]] || die "no ir_per_request in $BASELINE (run with UPDATE=1)"
change=$(awk -v p="$per" -v b="$base" 'BEGIN { printf "%+.1f", (p - b) * 100 / b }')
echo "baseline: $base Ir per request; change $change % (fails above +$TOLERANCE %)"
if awk -v c="$change" -v t="$TOLERANCE" 'BEGIN { exit !(c > t) }'; then
    echo "FAIL: instructions per request grew by more than $TOLERANCE %" >&2
    exit 1
fi
if awk -v c="$change" -v t="$TOLERANCE" 'BEGIN { exit !(c < -t) }'; then
    echo "much better than the baseline: consider UPDATE=1 to lock the gain in" >&2
fi
