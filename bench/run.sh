#!/usr/bin/env bash
# bellhop next to nginx, HAProxy and Caddy (Debian packages) and a no-proxy baseline,
# each a reverse proxy to the same backend (bench/backend.rs), measured in one run
# and printed as one table. Not part of the test suite; bench/RESULTS.md records a run.
#
#   bench/run.sh                          # full run: 3 rounds of 10 s per load test, 1,000 and 10,000 WebSockets
#   QUICK=1 bench/run.sh                  # smoke run, under 3 minutes: one round, 2 s, 200/500 WebSockets
#   PROXIES="bellhop nginx" bench/run.sh  # a subset (baseline bellhop nginx haproxy caddy)
#   INSTALL=1 bench/run.sh                # apt-get install the missing packages first
#
# Needs the Debian packages wrk, nghttp2-client (h2load), nginx, haproxy, caddy,
# openssl, procps, util-linux (taskset), python3. It lists what is missing and exits 3;
# it installs nothing unless INSTALL=1.
#
# Fair set-up: every proxy listens on 127.0.0.1 high ports with plain HTTP and HTTPS
# (h2 + http/1.1, TLS 1.2/1.3, the same generated ECDSA P-256 certificate), keeps
# upstream connections alive, passes WebSocket upgrades, sets X-Forwarded-For/-Proto,
# logs nothing per request, and runs one worker: nginx `worker_processes 1`, HAProxy
# `nbthread 1`, Caddy GOMAXPROCS=1, bellhop `options { workers 1 }` when its config
# accepts it (otherwise its default runtime, noted in the output). The proxy is
# pinned to CPU $PROXY_CPU, load generators and backend to CPU $LOAD_CPU.
#
# Measures, per proxy:
#   requests/s, p50, p99 and proxy CPU µs per request (utime+stime of the proxy's
#   processes from /proc over exactly the load run, divided by requests done;
#   and of it the kernel's share, stime) for
#   HTTP/1.1 (wrk), h2 over TLS and HTTP/1.1 over TLS (h2load); new TLS handshakes/s
#   and CPU per handshake (h2load, one request per connection, `Connection: close`);
#   idle RSS (after start, one request, IDLE_SETTLE s idle and one more request:
#   settle_idle in bench/proxies.sh); RSS and KiB per connection with idle
#   WebSockets (ws and wss); the share
#   of pushes (one every 0.5 s to every socket) delivered and their p99 delay.
#   RSS is VmRSS summed over the proxy's processes (nginx: master + worker).
#
# Settings (environment), full / QUICK=1:
#   DURATION      seconds per load test                           10 / 2
#   ROUNDS        rounds of the load tests, proxies taken in turn   3 / 1
#                 in each; every load figure is the median of them
#   CONNECTIONS   concurrent connections of wrk and h2load        50
#   HANDSHAKES    new TLS connections for the handshake test      3000 / 300
#   WS_COUNTS     idle WebSocket counts for the memory test       "1000 10000" / "200 500"
#   PUSH_COUNT    WebSockets receiving pushes                     10000 / 500
#   PUSH_SECS     seconds of pushes measured                      10 / 3
#   PUSH_ROUNDS   rounds of the push test; its figures are medians  3 / 1
#   PROXY_CPU, LOAD_CPU   CPUs for the proxy / everything else    0, 1
#   KEEP=1        keep the temp dir (configs, logs)
# WebSocket counts are capped by the open-file hard limit (a proxy needs two per socket).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

quick() { if [[ -n ${QUICK:-} ]]; then echo "$2"; else echo "$1"; fi; }
DURATION=${DURATION:-$(quick 10 2)}
ROUNDS=${ROUNDS:-$(quick 3 1)}
CONNECTIONS=${CONNECTIONS:-50}
HANDSHAKES=${HANDSHAKES:-$(quick 3000 300)}
WS_COUNTS=${WS_COUNTS:-$(quick "1000 10000" "200 500")}
PUSH_COUNT=${PUSH_COUNT:-$(quick 10000 500)}
PUSH_SECS=${PUSH_SECS:-$(quick 10 3)}
PUSH_ROUNDS=${PUSH_ROUNDS:-$(quick 3 1)}
PROXIES=${PROXIES:-baseline bellhop nginx haproxy caddy}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CLK_TCK=$(getconf CLK_TCK)

needs=(wrk:wrk h2load:nghttp2-client openssl:openssl taskset:util-linux pgrep:procps
    python3:python3 curl:curl)
for p in $PROXIES; do
    case $p in
        nginx | haproxy | caddy) needs+=("$p:$p") ;;
        baseline | bellhop) ;;
        *) die "unknown proxy '$p' in PROXIES" ;;
    esac
done
require_commands "${needs[@]}"
if ss -ltn | awk '{print $4}' | grep -qE ':(80|443)$'; then
    note "something listens on port 80 or 443 (a packaged proxy's service?); it shares the CPUs"
fi

# A proxy needs two descriptors per WebSocket (client and upstream side).
ulimit -n "$(ulimit -Hn)"
WS_MAX=$((($(ulimit -n) - 200) / 2 / 100 * 100))
cap_ws() { local n=$1; ((n > WS_MAX)) && n=$WS_MAX; echo "$n"; }
WS_COUNTS=$(for n in $WS_COUNTS; do cap_ws "$n"; done | xargs)
PUSH_COUNT=$(cap_ws "$PUSH_COUNT")
# Every client here is 127.0.0.1: bellhop's per-address cap (256 by default)
# would refuse the WebSocket runs, so both caps go above the largest count,
# as the other proxies have none by default (nginx's worker_connections is
# set to fit in its config).
WS_PEAK=$(for n in $WS_COUNTS $PUSH_COUNT; do echo "$n"; done | sort -n | tail -1)
BELLHOP_OPTIONS="max-connections $((WS_PEAK * 2 + 1024)); max-connections-per-ip $((WS_PEAK * 2 + 1024))"

note "building release binaries (bellhop, bench-backend, ws-load)"
cargo build --release --quiet --bin bellhop --example bench-backend --example ws-load
make_cert "$BENCH_TMP"
start_backend "$LOAD_CPU"
# A load generator that hangs (h2load once waited 7 minutes on a 10 s run
# against nginx) is stopped, noted, and leaves its cells empty.
load() {
    timeout "$((DURATION + 60))" taskset -c "$LOAD_CPU" "$@" ||
        note "load generator failed or timed out (exit $?): ${*:1:3} ..."
}

source bench/proxies.sh

declare -A R    # R[proxy,metric] = value
ROWS=()         # metric keys in table order, with their labels in LABEL
declare -A LABEL
row() { LABEL[$1]=$2; [[ " ${ROWS[*]} " == *" $1 "* ]] || ROWS+=("$1"); }

# cpu_us_per TICKS_DELTA COUNT — µs of proxy CPU per unit.
cpu_us_per() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", n ? t * 1e6 / hz / n : 0 }'; }

# measure NAME KIND URL — one load run; stores rps, p50, p99, cpu per request.
measure() {
    local name=$1 kind=$2 url=$3 out=$BENCH_TMP/$1.$2 before after requests rps p50 p99
    local kernel_before kernel_after
    before=$(proxy_ticks) kernel_before=$(proxy_ticks kernel)
    case $kind in
        h1)
            load wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$out"
            requests=$(awk '/requests in/ {print $1; exit}' "$out")
            rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
            p50=$(to_ms "$(awk '$1 == "50%" {print $2; exit}' "$out")")
            p99=$(to_ms "$(awk '$1 == "99%" {print $2; exit}' "$out")")
            if grep -qE 'Non-2xx|Socket errors' "$out"; then note "$name $kind: $(grep -E 'Non-2xx|Socket errors' "$out")"; fi
            ;;
        h2 | h1tls)
            local proto=(); [[ $kind == h1tls ]] && proto=(--h1)
            load h2load "${proto[@]}" -t1 -c"$CONNECTIONS" -m1 -D "$DURATION" --log-file "$out.log" "$url" >"$out"
            requests=$(awk '/^requests:/ {print $8; exit}' "$out")
            rps=$(awk '/^finished in/ {printf "%.0f", $4; exit}' "$out")
            read -r p50 p99 < <(sort -n -k3 "$out.log" | awk '{ d[NR] = $3 } END {
                printf "%.2f %.2f\n", d[int(NR * 0.50) + 1] / 1000, d[int(NR * 0.99) + 1] / 1000 }')
            grep -q '^TLS Protocol: TLSv1.3' "$out" || note "$name $kind: $(grep '^TLS Protocol' "$out")"
            ;;
    esac
    after=$(proxy_ticks) kernel_after=$(proxy_ticks kernel)
    in_round "$name" "$kind.rps" "$rps"; in_round "$name" "$kind.p50" "$p50"
    in_round "$name" "$kind.p99" "$p99"
    if [[ -n $PROXY_PIDS ]]; then
        in_round "$name" "$kind.cpu" "$(cpu_us_per $((after - before)) "$requests")"
        in_round "$name" "$kind.sys" "$(cpu_us_per $((kernel_after - kernel_before)) "$requests")"
    fi
}

# in_round NAME METRIC VALUE — one round's figure (none when VALUE is empty:
# a failed load run leaves its round out of the median).
declare -A ROUND_VALUES
in_round() { [[ -z $3 ]] || ROUND_VALUES[$1,$2]+="$3 "; }

# take_medians — R[NAME,METRIC] is the median of its rounds' figures (the
# mean of the middle two for an even count).
take_medians() {
    local key
    for key in "${!ROUND_VALUES[@]}"; do
        # shellcheck disable=SC2086 # the round values are words
        R[$key]=$(median ${ROUND_VALUES[$key]} |
            awk '{ printf ($1 == int($1) && $1 >= 100) ? "%d" : "%.2f", $1 }' | sed -E 's/(\.[0-9])0$/\1/')
    done
}

# handshakes NAME URL — HANDSHAKES new TLS connections, one request each.
handshakes() {
    local name=$1 out=$BENCH_TMP/$1.hs before after count
    before=$(proxy_ticks)
    load h2load --h1 -t1 -c"$CONNECTIONS" -n "$HANDSHAKES" -H 'Connection: close' "$2" >"$out"
    after=$(proxy_ticks)
    count=$(awk '/^requests:/ {print $8; exit}' "$out")
    in_round "$name" hs.rate "$(awk '/^finished in/ {printf "%.0f", $4; exit}' "$out")"
    in_round "$name" hs.cpu "$(cpu_us_per $((after - before)) "$count")"
    grep -q '^TLS Protocol: TLSv1.3' "$out" || note "$name handshakes: $(grep '^TLS Protocol' "$out")"
}

# ws_load WHAT OUT ARGS... — runs ws-load; a failure is noted (its cells stay
# empty) rather than ending the whole run.
ws_load() {
    local what=$1 out=$2; shift 2
    if ! load target/release/examples/ws-load "$@" --cafile "$BENCH_TMP/ca.pem" >"$out" 2>"$out.err"; then
        note "$what failed: $(head -3 "$out.err" | xargs)"
    fi
}

# ws_memory NAME SCHEME URL — RSS with each of WS_COUNTS idle WebSockets open,
# per socket counted from the RSS just before the first one opened.
ws_memory() {
    local name=$1 scheme=$2 out=$BENCH_TMP/$1.mem.$2 base n kib
    ws_load "$name $scheme memory" "$out" memory "$3" --pids "$PROXY_PIDS" --counts "${WS_COUNTS// /,}"
    base=$(awk -F'kib=' '/open=0 / {print $2}' "$out")
    for n in $WS_COUNTS; do
        row "$scheme.$n.rss" "RSS, $n idle $scheme (MB)"
        row "$scheme.$n.per" "KiB per idle $scheme at $n"
        kib=$(awk -F'kib=' -v k="open=$n" '$0 ~ k " " {print $2}' "$out")
        [[ -n $kib ]] || continue
        R[$name,$scheme.$n.rss]=$(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }')
        R[$name,$scheme.$n.per]=$(awk -v k="$kib" -v b="$base" -v n="$n" 'BEGIN { printf "%.1f", (k - b) / n }')
    done
}

# pushes NAME URL — PUSH_COUNT WebSockets receiving a push every 0.5 s; one
# round's figures (the share delivered, the p99 delay) and its count of pushes
# that reached every socket, summed over the rounds.
pushes() {
    local out=$BENCH_TMP/$1.push line ticks complete
    ws_load "$1 push" "$out" push "$2" --count "$PUSH_COUNT" --secs "$PUSH_SECS"
    line=$(grep '^push ' "$out") || return 0
    in_round "$1" push.share "$(sed -E 's/.*delivered_share=([^ ]+).*/\1/' <<<"$line" | awk '{ printf "%.2f", $1 * 100 }')"
    in_round "$1" push.p99 "$(sed -E 's/.*p99_ms=([^ ]+).*/\1/' <<<"$line")"
    read -r ticks complete < <(sed -E 's/.*ticks=([0-9]+).*complete_ticks=([0-9]+).*/\1 \2/' <<<"$line")
    PUSH_TICKS[$1]=$((${PUSH_TICKS[$1]:-0} + ticks))
    PUSH_COMPLETE[$1]=$((${PUSH_COMPLETE[$1]:-0} + complete))
}
declare -A PUSH_TICKS PUSH_COMPLETE

row h1.rps "HTTP/1.1 requests/s (wrk c=$CONNECTIONS)"
row h1.p50 "HTTP/1.1 p50 ms"
row h1.p99 "HTTP/1.1 p99 ms"
row h1.cpu "HTTP/1.1 proxy CPU µs/request"
row h1.sys "HTTP/1.1 of which kernel µs/request"
row h2.rps "h2 over TLS requests/s (h2load c=$CONNECTIONS m=1)"
row h2.p50 "h2 over TLS p50 ms"
row h2.p99 "h2 over TLS p99 ms"
row h2.cpu "h2 over TLS proxy CPU µs/request"
row h2.sys "h2 over TLS of which kernel µs/request"
row h1tls.rps "HTTP/1.1 over TLS requests/s (h2load --h1)"
row h1tls.p50 "HTTP/1.1 over TLS p50 ms"
row h1tls.p99 "HTTP/1.1 over TLS p99 ms"
row h1tls.cpu "HTTP/1.1 over TLS proxy CPU µs/request"
row h1tls.sys "HTTP/1.1 over TLS of which kernel µs/request"
row hs.rate "new TLS 1.3 connections/s"
row hs.cpu "proxy CPU µs per new TLS connection"
row idle.rss "idle RSS (MB)"

# The load tests take the proxies in turn, ROUNDS times: a machine that drifts
# over minutes (another guest on the host) moves every proxy's figures alike
# instead of whichever proxy ran then, and the median of the rounds leaves out
# a round that one pause spoiled.
for ((round = 1; round <= ROUNDS; round++)); do
    for name in $PROXIES; do
        note "$name: load tests, round $round of $ROUNDS"
        start_proxy "$name"
        # Every round starts from a settled proxy: bellhop gives start-up's
        # memory and code back 5 s after it starts, which must not fall in a
        # measured run.
        settle_idle
        if [[ -n $PROXY_PIDS && $round == 1 ]]; then
            R[$name,idle.rss]=$(awk -v k="$(rss_kib "$PROXY_PIDS")" 'BEGIN { printf "%.1f", k / 1024 }')
        fi
        measure "$name" h1 "http://$HTTP_ADDR/"
        if [[ -n $HTTPS_ADDR ]]; then
            measure "$name" h2 "https://$HTTPS_ADDR/"
            measure "$name" h1tls "https://$HTTPS_ADDR/"
            handshakes "$name" "https://$HTTPS_ADDR/"
        fi
        stop_proxy
    done
done
take_medians

for name in $PROXIES; do
    note "$name: WebSockets"
    start_proxy "$name"
    if [[ -n $PROXY_PIDS ]]; then
        # A fresh proxy for each: memory freed by the load runs (or the other
        # scheme's sockets) would otherwise be reused and hide the per-socket cost.
        for scheme in ws wss; do
            stop_proxy
            start_proxy "$name"
            addr=$HTTP_ADDR; [[ $scheme == wss ]] && addr=$HTTPS_ADDR
            ws_memory "$name" "$scheme" "$scheme://$addr/"
        done
    fi
    stop_proxy
done
# Pushes in rounds too: a 10 s run is 20 ticks, and one tick held up as a
# whole (its p50 then 10-100 ms; bench/RESULTS.md, session 17) is 5 % of the
# deliveries, so a single run's p99 is that tick's. The median of the rounds
# leaves such a run out.
for ((round = 1; round <= PUSH_ROUNDS; round++)); do
    for name in $PROXIES; do
        note "$name: pushes, round $round of $PUSH_ROUNDS"
        start_proxy "$name"
        pushes "$name" "ws://$HTTP_ADDR/push"
        stop_proxy
    done
done
take_medians
for name in $PROXIES; do
    [[ -z ${PUSH_TICKS[$name]:-} ]] || R[$name,push.complete]="${PUSH_COMPLETE[$name]}/${PUSH_TICKS[$name]}"
done
row push.share "pushes delivered, $PUSH_COUNT ws × ${PUSH_SECS} s (%)"
row push.complete "pushes that reached every socket (all rounds)"
row push.p99 "push delay p99 ms (backend write → client read)"

echo
echo "bellhop bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "proxy on CPU $PROXY_CPU, load and backend on CPU $LOAD_CPU; ${DURATION} s per load test, median of $ROUNDS rounds (pushes: of $PUSH_ROUNDS); $(proxy_versions)"
printf '\n| %s |' "metric"; for p in $PROXIES; do printf ' %s |' "$p"; done; echo
printf '|---|'; for _ in $PROXIES; do printf -- '---:|'; done; echo
for key in "${ROWS[@]}"; do
    printf '| %s |' "${LABEL[$key]}"
    for p in $PROXIES; do printf ' %s |' "${R[$p,$key]:--}"; done
    echo
done
