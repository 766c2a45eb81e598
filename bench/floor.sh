#!/usr/bin/env bash
# The floor under CPU per proxied request on this machine: what a relay that
# parses nothing costs per HTTP/1.1 keep-alive request, plain and over TLS,
# next to nginx, bellhop and HAProxy. The relay (bench/proxies.sh's `relay`:
# HAProxy in `mode tcp`, TLS terminated by OpenSSL for the TLS load) makes the
# same two reads and two sends per request as an HTTP proxy, so the kernel's
# work is the same, and its user space is its event loop (and the TLS records)
# and nothing else. A target below the relay's CPU per request is out of
# reach of any HTTP proxy on this machine, whatever it does in user space.
# Not part of the test suite; bench/RESULTS.md records a run.
#
#   bench/floor.sh                              # 10 rounds of 5 s per load
#   ROUNDS=4 DURATION=3 LOADS=h1 bench/floor.sh
#
# How: bench/proxies.sh's configs (one worker, logging off, proxying to
# bench-backend), the proxy on PROXY_CPU, the load and the backend on
# LOAD_CPU. In each round every proxy in turn: start, then for each load a 1 s
# warm-up and one measured run (`wrk -t1 -c50` for h1; `h2load --h1 -t1 -c50
# -m1` for h1tls), stop. CPU time (utime, stime) from /proc over exactly the
# measured run, divided by the requests completed. This guest's speed moves
# by ±20 % from one minute to the next (RESULTS.md), so the proxies share each
# round's conditions and the summary gives, besides the medians, the median of
# each round's ratio to nginx.
#
# Settings (environment): ROUNDS (10), DURATION (5), LOADS ("h1 h1tls"),
# PROXIES ("relay nginx bellhop haproxy"; nginx is the reference and must be
# among them), BELLHOP_BIN (target/release/bellhop, built when missing),
# PROXY_CPU (0), LOAD_CPU (1). Needs wrk, nghttp2-client (h2load), nginx,
# haproxy (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/proxies.sh

ROUNDS=${ROUNDS:-10}
DURATION=${DURATION:-5}
PROXIES=${PROXIES:-relay nginx bellhop haproxy}
LOADS=${LOADS:-h1 h1tls}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CLK_TCK=$(getconf CLK_TCK)

[[ " $PROXIES " == *" nginx "* ]] || die "PROXIES must include nginx, the reference"
require_commands wrk:wrk h2load:nghttp2-client openssl:openssl taskset:util-linux
need_proxies $PROXIES
make_cert "$BENCH_TMP"
start_backend "$LOAD_CPU"

declare -A CPU KERNEL USER RPS

# run_load LOAD SECONDS URL OUT — one load run of kind h1 (wrk) or h1tls
# (h2load --h1, one request at a time on each connection); prints the
# requests it completed.
run_load() {
    case $1 in
        h1) taskset -c "$LOAD_CPU" wrk -t1 -c50 -d"$2s" "$3" >"$4"
            awk '/requests in/ { print $1; exit }' "$4" ;;
        h1tls) timeout "$(($2 + 60))" taskset -c "$LOAD_CPU" h2load --h1 -t1 -c50 -m1 -D "$2" "$3" >"$4"
            awk '/^requests:/ { print $8; exit }' "$4" ;;
    esac
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(proxy_versions); wrk -t1 -c50 (h1), h2load --h1 -t1 -c50 -m1 (h1tls); $DURATION s x $ROUNDS rounds"
for ((round = 1; round <= ROUNDS; round++)); do
    for name in $PROXIES; do
        start_proxy "$name"
        for load in $LOADS; do
            url=http://$HTTP_ADDR/
            [[ $load == h1tls ]] && url=https://$HTTPS_ADDR/
            run_load "$load" 1 "$url" "$BENCH_TMP/warm.out" >/dev/null
            all0=$(proxy_ticks); kernel0=$(proxy_ticks kernel)
            requests=$(run_load "$load" "$DURATION" "$url" "$BENCH_TMP/load.out")
            all1=$(proxy_ticks); kernel1=$(proxy_ticks kernel)
            [[ -n $requests && $requests -gt 0 ]] || die "$name $load: no request completed"
            read -r rps cpu kernel user < <(awk -v n="$requests" -v d="$DURATION" -v hz="$CLK_TCK" \
                -v a=$((all1 - all0)) -v k=$((kernel1 - kernel0)) 'BEGIN {
                us = 1e6 / hz / n; printf "%d %.2f %.2f %.2f\n", n / d, a * us, k * us, (a - k) * us }')
            printf '%2d %-5s %-8s %7d requests/s  CPU %6.2f µs/request (kernel %6.2f, user %5.2f)\n' \
                "$round" "$load" "$name" "$rps" "$cpu" "$kernel" "$user"
            RPS[$load,$name]+=" $rps"; CPU[$load,$name]+=" $cpu"
            KERNEL[$load,$name]+=" $kernel"; USER[$load,$name]+=" $user"
        done
        stop_proxy
    done
done

# ratios LOAD NAME — each round's ratio to nginx's CPU per request in the same round.
ratios() {
    local -a mine=(${CPU[$1,$2]}) ref=(${CPU[$1,nginx]}) out=()
    local i
    for i in "${!mine[@]}"; do
        out+=("$(awk -v a="${mine[$i]}" -v b="${ref[$i]}" 'BEGIN { printf "%.2f", a / b }')")
    done
    echo "${out[@]}"
}

for load in $LOADS; do
    echo
    echo "| $load, per request, median of $ROUNDS rounds | requests/s | CPU µs | kernel µs | user µs | CPU ÷ nginx's, median of rounds (min-max) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for name in $PROXIES; do
        r=($(ratios "$load" "$name"))
        range=$(printf '%s\n' "${r[@]}" | sort -g | sed -n '1p;$p' | paste -sd-)
        printf '| %s | %.0f | %.2f | %.2f | %.2f | %.2f (%s) |\n' "$name" "$(median ${RPS[$load,$name]})" \
            "$(median ${CPU[$load,$name]})" "$(median ${KERNEL[$load,$name]})" \
            "$(median ${USER[$load,$name]})" "$(median "${r[@]}")" "$range"
    done
done
