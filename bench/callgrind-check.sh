#!/usr/bin/env bash
# CPU regression check CI can afford (well under a minute after the release build):
# instructions per proxied request, counted by callgrind (deterministic to about
# 0.1 %, unlike wall-clock figures), compared with bench/callgrind-baseline.txt.
#
#   bench/callgrind-check.sh              # build release, measure, compare
#   UPDATE=1 bench/callgrind-check.sh     # measure and write the new baseline
#   BUILD=0 bench/callgrind-check.sh      # use the existing target/release binaries
#   PEERS="nginx haproxy" bench/callgrind-check.sh   # also measure the peers the same way
#
# How: bench-backend runs natively; `bellhop run` (the Proxyfile of bench/run.sh:
# plain HTTP and HTTPS with a given certificate, logging off) runs under
# `valgrind --tool=callgrind`. For each path, HTTP/1.1 keep-alive (`h1`) and h2 over
# TLS 1.3 (`h2tls`): one curl sends WARMUP requests on one connection, the counters
# are zeroed (callgrind_control -z), a second curl sends REQUESTS on one connection,
# the counters are dumped (callgrind_control -d). Total Ir of all bellhop threads
# divided by REQUESTS is the figure; start-up, warm-up and the TLS handshake of the
# measured connection (≈ 1/REQUESTS of it) stay out of it or nearly so.
#
# Settings (environment): REQUESTS (2000), WARMUP (200), TOLERANCE in % (15),
# BASELINE (bench/callgrind-baseline.txt), UPDATE=1, BUILD=0, KEEP=1, PEERS (proxies of
# bench/proxies.sh, their Debian packages installed; only user-space instructions
# compare this way: callgrind sees no kernel time),
# INSTALL=1 (apt-get install the missing valgrind/curl/openssl; never otherwise).
# Exit codes: 0 within tolerance (or baseline written), 1 a path regressed beyond
# TOLERANCE, 2 the measurement itself failed, 3 tools missing.
# The baseline depends on the compiler and dependency versions: after upgrading
# them (or a deliberate trade-off), rerun with UPDATE=1 and commit the file.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/proxies.sh
DIE_CODE=2

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
TOLERANCE=${TOLERANCE:-15}
BASELINE=${BASELINE:-bench/callgrind-baseline.txt}

require_commands valgrind:valgrind callgrind_control:valgrind curl:curl openssl:openssl \
    python3:python3
trap 'echo "callgrind-check: measurement failed" >&2; exit 2' ERR

if [[ ${BUILD:-1} == 1 ]]; then
    note "building release binaries (bellhop, bench-backend)"
    cargo build --release --quiet --bin bellhop --example bench-backend
fi
make_cert "$BENCH_TMP"
start_backend ""

# under_callgrind NAME — starts proxy NAME (config_NAME of bench/proxies.sh) under
# callgrind on fresh ports; sets PID, HTTP_URL, HTTPS_URL.
under_callgrind() {
    local name=$1 dir=$BENCH_TMP/$1 http https
    http=$(free_port); https=$(free_port)
    mkdir -p "$dir"
    "config_$name" "$dir" "$http" "$https"
    # nginx: the worker is the master itself, so callgrind sees the requests.
    [[ $name == nginx ]] && PROXY_CMD+=(-g "master_process off;")
    spawn "$dir/stderr.log" env "${PROXY_ENV[@]}" valgrind --tool=callgrind \
        --callgrind-out-file="$dir/callgrind.out" "${PROXY_CMD[@]}"
    PID=$SPAWNED HTTP_URL="http://127.0.0.1:$http/" HTTPS_URL="https://127.0.0.1:$https/"
    WAIT_PID=$PID wait_until 120 curl -fsS -o /dev/null "$HTTP_URL" ||
        { cat "$dir/stderr.log" >&2; die "$name did not answer under valgrind"; }
}

# batch N URL CURL_ARGS... — N GETs on one connection; fails unless all got a 2xx.
batch() {
    local n=$1 url=$2 i; shift 2
    for ((i = 0; i < n; i++)); do printf 'url = "%s"\n' "$url"; done >"$BENCH_TMP/urls"
    curl -sSf "$@" --config "$BENCH_TMP/urls" -w '%{http_code}\n' -o /dev/null >"$BENCH_TMP/codes"
    (($(grep -c '^2' "$BENCH_TMP/codes") == n)) || die "not every request to $url succeeded"
}

# ir_per_request KEY URL CURL_ARGS... — sets IR[KEY]: Ir of $PID's REQUESTS
# requests after WARMUP, per request.
declare -A IR
ir_per_request() {
    local key=$1; shift
    batch "$WARMUP" "$@"
    callgrind_control -z "$PID" >>"$BENCH_TMP/control.log" 2>&1
    batch "$REQUESTS" "$@"
    callgrind_control -d "$PID" >>"$BENCH_TMP/control.log" 2>&1
    local dump
    dump=$(ls -t "$BENCH_TMP"/*/callgrind.out.* | head -1)
    [[ -s $dump ]] || die "callgrind wrote no dump for $key"
    IR[$key]=$(awk -v n="$REQUESTS" '/^(summary|totals):/ { printf "%d", $2 / n; exit }' "$dump")
}

# measure NAME — IR[NAME.h1] and IR[NAME.h2tls].
measure() {
    under_callgrind "$1"
    ir_per_request "$1.h1" "$HTTP_URL"
    ir_per_request "$1.h2tls" "$HTTPS_URL" --http2 --tlsv1.3 --cacert "$BENCH_TMP/ca.pem"
    stop "$PID"
}

measure bellhop
IR[h1]=${IR[bellhop.h1]} IR[h2tls]=${IR[bellhop.h2tls]}
echo "bellhop instructions (Ir, all threads) per proxied request, $REQUESTS requests on one connection:"
echo "  h1     HTTP/1.1 keep-alive   ${IR[h1]}"
echo "  h2tls  h2 over TLS 1.3       ${IR[h2tls]}"

# PEERS="nginx haproxy": the same batches through each, for a like-for-like
# figure of user-space instructions (callgrind sees no kernel time).
for peer in ${PEERS:-}; do
    measure "$peer"
    for path in h1 h2tls; do
        awk -v p="$peer" -v k="$path" -v o="${IR[$peer.$path]}" -v b="${IR[$path]}" \
            'BEGIN { printf "  %-6s %-8s %7d Ir/request  (bellhop / %s = %.2f)\n", k, p, o, p, b / o }'
    done
done

if [[ ${UPDATE:-} == 1 ]]; then
    {
        echo "# Ir per proxied request (path, instructions), written by UPDATE=1 bench/callgrind-check.sh"
        echo "# on $(date -u +%F), $(rustc --version), commit $(git describe --always --dirty)"
        echo "h1 ${IR[h1]}"
        echo "h2tls ${IR[h2tls]}"
    } >"$BASELINE"
    echo "wrote $BASELINE"
    exit 0
fi

status=0
for path in h1 h2tls; do
    base=$(awk -v p="$path" '$1 == p {print $2}' "$BASELINE")
    [[ -n $base ]] || die "no '$path' line in $BASELINE (run with UPDATE=1)"
    change=$(awk -v p="${IR[$path]}" -v b="$base" 'BEGIN { printf "%+.1f", (p - b) * 100 / b }')
    verdict=ok
    if awk -v c="$change" -v t="$TOLERANCE" 'BEGIN { exit !(c > t) }'; then
        verdict="FAIL (more than +$TOLERANCE %)"; status=1
    elif awk -v c="$change" -v t="$TOLERANCE" 'BEGIN { exit !(c < -t) }'; then
        verdict="much better: consider UPDATE=1 to lock the gain in"
    fi
    echo "  $path: baseline $base, change $change %: $verdict"
done
exit "$status"
