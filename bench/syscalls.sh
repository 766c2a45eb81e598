#!/usr/bin/env bash
# System calls per proxied HTTP/1.1 keep-alive request, bellhop next to its
# peers: the kernel's share of a request's CPU, which callgrind does not see.
# Not part of the test suite; bench/RESULTS.md records a run.
#
#   bench/syscalls.sh                          # bellhop and nginx
#   PROXIES="bellhop nginx haproxy" bench/syscalls.sh
#   BELLHOP_BIN=/tmp/bellhop-old bench/syscalls.sh
#
# How: bench/proxies.sh's configs (one worker, logging off, proxying to
# bench-backend). One curl sends WARMUP GETs on one connection, then
# `strace -c -f` is attached to the proxy's processes while a second curl
# sends REQUESTS GETs on one connection; the table is strace's count of each
# call, divided by REQUESTS. strace slows every call, so only the counts mean
# anything, not its times.
#
# Settings (environment): REQUESTS (2000), WARMUP (200), PROXIES ("bellhop
# nginx"), BELLHOP_BIN (target/release/bellhop, built when missing),
# PROXY_CPU (0).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/proxies.sh

REQUESTS=${REQUESTS:-2000}
WARMUP=${WARMUP:-200}
PROXIES=${PROXIES:-bellhop nginx}
PROXY_CPU=${PROXY_CPU:-0}

require_commands strace:strace curl:curl openssl:openssl
need_proxies $PROXIES
make_cert "$BENCH_TMP"
start_backend ""

# gets N — N GETs of the proxy's plain-HTTP address on one connection.
gets() {
    local i
    for ((i = 0; i < $1; i++)); do
        printf 'url = "http://%s/"\noutput = "/dev/null"\n' "$HTTP_ADDR"
    done >"$BENCH_TMP/urls"
    curl -sSf --config "$BENCH_TMP/urls"
}

echo "system calls per proxied HTTP/1.1 keep-alive request, $REQUESTS requests on one connection, $(date -u '+%Y-%m-%d %H:%M UTC')"
for name in $PROXIES; do
    start_proxy "$name"
    gets "$WARMUP"
    attach=()
    for pid in ${PROXY_PIDS//,/ }; do attach+=(-p "$pid"); done
    spawn "$BENCH_TMP/$name.strace.log" strace -f -c -o "$BENCH_TMP/$name.strace" "${attach[@]}"
    tracer=$SPAWNED
    wait_until 10 grep -q attached "$BENCH_TMP/$name.strace.log" || die "strace did not attach to $name"
    gets "$REQUESTS"
    # strace writes its summary when interrupted, then exits.
    kill -INT "$tracer"
    wait "$tracer" || true
    [[ -s $BENCH_TMP/$name.strace ]] || die "strace wrote no summary for $name"
    echo "== $(PROXIES=$name proxy_versions)"
    awk -v n="$REQUESTS" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" && $4 / n >= 0.01 {
            printf "  %-14s %6.2f\n", $NF, $4 / n; total += $4 / n }
        END { printf "  %-14s %6.2f\n", "all", total }' "$BENCH_TMP/$name.strace"
    stop_proxy
done
