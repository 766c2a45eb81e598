#!/usr/bin/env bash
# What the kernel is asked per proxied HTTP/1.1 request under load, bellhop
# next to its peers: system calls, TCP segments and context switches (wake-ups)
# per request while `wrk -t1 -c50` keeps the proxy saturated. bench/syscalls.sh
# counts calls on one idle connection; this is the busy case, where epoll
# batches and where a proxy that woke its peers more often would pay for it.
# Not part of the test suite; bench/RESULTS.md records a run.
#
#   bench/under-load.sh                          # bellhop, nginx and HAProxy
#   PROXIES="bellhop nginx" DURATION=10 bench/under-load.sh
#
# How: bench/proxies.sh's configs (one worker, logging off, proxying to
# bench-backend), the proxy on PROXY_CPU, wrk and the backend on LOAD_CPU.
# After a 1 s warm-up run, one measured wrk run, during which
#   - `perf stat -e 'syscalls:sys_enter_*'` counts the proxy's system calls
#     (the tracepoints need tracefs: mounted when it is not);
#   - `nstat` counts TCP segments on the machine (only this test runs);
#   - /proc/PID/task/*/status gives the proxy's and the backend's context
#     switches, `perf stat -e context-switches` wrk's.
# Every figure is divided by the requests wrk completed. perf's tracepoints
# slow the proxy a little; only the counts mean anything.
#
# Settings (environment): DURATION (5), PROXIES ("bellhop nginx haproxy"),
# BELLHOP_BIN (target/release/bellhop, built when missing), PROXY_CPU (0),
# LOAD_CPU (1). Needs wrk, perf (linux-perf), iproute2 (nstat), root for the
# tracepoints.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/proxies.sh

DURATION=${DURATION:-5}
PROXIES=${PROXIES:-bellhop nginx haproxy}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

require_commands wrk:wrk perf:linux-perf nstat:iproute2 openssl:openssl taskset:util-linux
need_proxies $PROXIES
if [[ ! -d /sys/kernel/tracing/events/syscalls ]]; then
    mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing ||
        die "the syscall tracepoints need tracefs at /sys/kernel/tracing (run as root)"
fi
make_cert "$BENCH_TMP"
start_backend "$LOAD_CPU"
backend_pid=$(pgrep -f 'examples/bench-backend' | head -1)

# switches PID[,PID..] — voluntary and involuntary context switches, all threads.
switches() {
    local pid
    for pid in ${1//,/ }; do cat /proc/"$pid"/task/*/status 2>/dev/null; done |
        awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 } END { print v + 0, n + 0 }'
}

for name in $PROXIES; do
    start_proxy "$name"
    taskset -c "$LOAD_CPU" wrk -t1 -c50 -d1s "http://$HTTP_ADDR/" >/dev/null
    read -r pv0 pn0 < <(switches "$PROXY_PIDS")
    read -r bv0 bn0 < <(switches "$backend_pid")
    nstat -n >/dev/null
    perf stat -x, -e 'syscalls:sys_enter_*' -p "$PROXY_PIDS" -o "$BENCH_TMP/$name.calls" \
        -- sleep "$((DURATION + 1))" &
    counting=$!
    perf stat -x, -e context-switches -o "$BENCH_TMP/$name.wrk" \
        taskset -c "$LOAD_CPU" wrk -t1 -c50 -d"${DURATION}s" "http://$HTTP_ADDR/" >"$BENCH_TMP/$name.out"
    nstat -z >"$BENCH_TMP/$name.nstat"
    read -r pv1 pn1 < <(switches "$PROXY_PIDS")
    read -r bv1 bn1 < <(switches "$backend_pid")
    wait "$counting" || true
    stop_proxy
    requests=$(awk '/requests in/ { print $1; exit }' "$BENCH_TMP/$name.out")
    [[ -n $requests && $requests -gt 0 ]] || die "$name: wrk completed no request"
    echo "== $name: $requests requests in $DURATION s, per request:"
    awk -F, -v n="$requests" '$1 + 0 > 0 { sub(/syscalls:sys_enter_/, "", $3); printf "  syscall %-22s %7.3f\n", $3, $1 / n; total += $1 }
        END { printf "  syscalls, all            %7.3f\n", total / n }' "$BENCH_TMP/$name.calls"
    awk -v n="$requests" '$1 ~ /^(TcpOutSegs|TcpExtTCPPureAcks|TcpExtDelayedACKs|TcpRetransSegs)$/ { printf "  %-24s %7.3f\n", $1, $2 / n }' \
        "$BENCH_TMP/$name.nstat"
    awk -v n="$requests" -v pv=$((pv1 - pv0)) -v pn=$((pn1 - pn0)) -v bv=$((bv1 - bv0)) -v bn=$((bn1 - bn0)) 'BEGIN {
        printf "  context switches: proxy %.3f voluntary, %.3f involuntary; backend %.3f\n", pv / n, pn / n, (bv + bn) / n }'
    awk -F, -v n="$requests" '/context-switches/ { printf "  context switches: wrk %.3f\n", $1 / n }' "$BENCH_TMP/$name.wrk"
done
