#!/usr/bin/env bash
# Memory under attack, bellhop next to nginx in one run: RSS at idle, with
# IDLE_COUNT TCP connections that never start their TLS handshake, with
# SLOW_COUNT TLS clients that each ask for a large response and read nothing,
# and 10 s and 30 s after each group of clients is gone. Not part of the test
# suite; bench/RESULTS.md and docs/security.md record a run.
#
#   bench/memory.sh                                   # 20,000 idle, 1,000 slow readers
#   QUICK=1 bench/memory.sh                           # 2,000 idle, 200 slow readers
#   BELLHOP_BIN=/tmp/bellhop-rel bench/memory.sh      # another build (the "before" column)
#   VARIANTS="glibc jemalloc" bench/memory.sh         # bellhop under LD_PRELOADed allocators
#
# Set-up: bench/proxies.sh's configs (one worker each, pinned to CPU $PROXY_CPU,
# HTTPS on 127.0.0.1 with a generated ECDSA certificate, proxying to
# bench-backend), plus for bellhop `max-connections` and `max-connections-per-ip`
# above the client count (every client is 127.0.0.1), and for nginx
# `worker_connections` = IDLE_COUNT + 2 × SLOW_COUNT + 1,024 (its slots are
# allocated at start, so this is its idle figure too). The script raises the open-file limit (soft and
# hard, as root) to fit IDLE_COUNT on both sides and stops everything it starts.
#
# RSS is VmRSS summed over the proxy's processes (nginx: master + worker);
# "anon" is the Anonymous line of /proc/PID/smaps_rollup (heap and stacks, what
# an allocator keeps), the rest being the mapped binary and libraries.
# RSS is sampled every 250 ms while the clients connect and hold (until the
# proxy has IDLE_COUNT established client connections, or its RSS stopped
# growing for 2 s with slow readers); the peak is the sample with the most
# client connections established. On a busy machine connecting can take
# longer than bellhop's 10 s handshake or 30 s write timeout: then fewer are
# held at once, and the table says how many.
#
# Settings (environment):
#   IDLE_COUNT    idle pre-handshake connections (0: the   20000 / QUICK 2000
#                 slow readers only, idle columns left 0)
#   SLOW_COUNT    slow TLS readers                         1000 / QUICK 200
#   SLOW_BYTES    size of the response each asks for       1048576
#   PROXIES       among "bellhop nginx"                    "bellhop nginx"
#   VARIANTS      bellhop runs: glibc (as built, with the systemd unit's
#                 environment, as every bellhop run here), glibc-defaults
#                 (without its GLIBC_TUNABLES), jemalloc, mimalloc (LD_PRELOAD of
#                 the Debian library), trim (glibc with M_TRIM_THRESHOLD and
#                 M_ARENA_MAX tunables)                     "glibc"
#   BELLHOP_BIN   the bellhop binary                       target/release/bellhop (built)
#   PROXY_CPU, LOAD_CPU                                    0, 1
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/proxies.sh

quick() { if [[ -n ${QUICK:-} ]]; then echo "$2"; else echo "$1"; fi; }
IDLE_COUNT=${IDLE_COUNT:-$(quick 20000 2000)}
SLOW_COUNT=${SLOW_COUNT:-$(quick 1000 200)}
SLOW_BYTES=${SLOW_BYTES:-1048576}
PROXIES=${PROXIES:-bellhop nginx}
VARIANTS=${VARIANTS:-glibc}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

require_commands openssl:openssl taskset:util-linux pgrep:procps python3:python3 curl:curl
[[ " $PROXIES " == *" nginx "* ]] && require_commands nginx:nginx

# The proxy holds IDLE_COUNT sockets (and two per slow reader): raise the
# open-file limit to fit them (the hard one too, where allowed: root with
# CAP_SYS_RESOURCE), else fewer idle connections are opened and the header says so.
want=$((IDLE_COUNT + 1024))
(($(ulimit -Hn) >= want)) || ulimit -Hn "$want" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
if ((IDLE_COUNT > $(ulimit -n) - 1024)); then
    note "open-file limit $(ulimit -n): $((IDLE_COUNT = $(ulimit -n) - 1024)) idle connections instead"
fi
CHUNK=$(($(ulimit -n) / 2))

# Another build under test (BELLHOP_BIN) reuses a bench-backend already built:
# building it builds this tree's bellhop library in release too.
if [[ $BELLHOP_BIN == target/release/bellhop || ! -x target/release/examples/bench-backend ]]; then
    note "building release binaries (bellhop, bench-backend)"
    cargo build --release --quiet --bin bellhop --example bench-backend
fi
make_cert "$BENCH_TMP"
start_backend "$LOAD_CPU"

# Settings every bellhop run gets: caps above the client count.
CAP=$(((IDLE_COUNT + SLOW_COUNT) * 2 + 64))
BELLHOP_OPTIONS="max-connections $CAP; max-connections-per-ip $CAP"
# Each slow reader takes two of nginx's slots (client and upstream).
NGINX_CONNECTIONS=$((IDLE_COUNT + 2 * SLOW_COUNT + 1024))

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
anon_kib() {
    local pid total=0 kib
    for pid in ${1//,/ }; do
        kib=$(awk '/^Anonymous:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}
# "RSS anon" in MiB for the running proxy.
snapshot() { echo "$(mib "$(rss_kib "$PROXY_PIDS")") $(mib "$(anon_kib "$PROXY_PIDS")")"; }
held_at_least() { (($(clients_held) >= $1)); }

# Waits (at most 20 s) until the proxy's RSS has not grown for 2 s.
wait_rss_flat() {
    local last=0 now flat=0 i
    for ((i = 0; i < 80 && flat < 8; i++)); do
        now=$(rss_kib "$PROXY_PIDS")
        if ((now > last)); then last=$now; flat=0; else flat=$((flat + 1)); fi
        sleep 0.25
    done
}

# clients_held — established client connections on the proxy's HTTPS port.
clients_held() { ss -Htn state established "( sport = :${HTTPS_ADDR##*:} )" | wc -l; }

# sample FILE — "clients RSS-KiB anon-KiB" of the proxy every 250 ms into
# FILE until $BENCH_TMP/stop-sampling exists.
sample() {
    {
        while [[ ! -e $BENCH_TMP/stop-sampling ]]; do
            echo "$(clients_held) $(rss_kib "$PROXY_PIDS") $(anon_kib "$PROXY_PIDS")"
            sleep 0.25
        done
        # One more when told to stop: a few hundred clients connect between
        # two samples, and the wait for them ends before the next one (the
        # table then said 0 held).
        echo "$(clients_held) $(rss_kib "$PROXY_PIDS") $(anon_kib "$PROXY_PIDS")"
    } >"$1"
}

# attack KIND COUNT [PATH] — runs the clients and sets RESULT to
# "held peak-RSS peak-anon RSS+10s anon+10s RSS+30s anon+30s" (MiB), where
# the peak is the sample with the most client connections established (the
# highest RSS among those), and held their number. Sampling, rather than reading
# once all are connected, keeps the figure honest on a busy machine where
# connecting takes longer than bellhop's 10 s handshake timeout.
attack() {
    local kind=$1 count=$2 peak after10 after30 closed
    rm -f "$BENCH_TMP/stop-sampling"
    sample "$BENCH_TMP/samples.$kind" &
    local sampler=$!
    # Client processes of at most CHUNK sockets each (one open-file limit
    # each; slow readers in groups of 100, which connect in parallel).
    local clients=() left=$count n i=0 chunk=$CHUNK
    [[ $kind == slowread ]] && chunk=100
    while ((left > 0)); do
        n=$((left < chunk ? left : chunk)); left=$((left - n)); i=$((i + 1))
        spawn "$BENCH_TMP/clients.$kind.$i.log" taskset -c "$LOAD_CPU" \
            python3 bench/memory_clients.py "$kind" "$n" "$HTTPS_ADDR" "${3:--}" $((76 + i))
        clients+=("$SPAWNED")
    done
    for ((n = 1; n <= i; n++)); do
        WAIT_PID=${clients[n - 1]} wait_until 300 grep -q ready "$BENCH_TMP/clients.$kind.$n.log" ||
            { cat "$BENCH_TMP/clients.$kind.$n.log" >&2; die "$kind clients did not connect"; }
    done
    if [[ $kind == idle ]]; then
        wait_until 20 held_at_least "$count" || true
    else
        wait_rss_flat
    fi
    touch "$BENCH_TMP/stop-sampling"; wait "$sampler" || true
    peak=$(sort -k1,1n -k2,2n "$BENCH_TMP/samples.$kind" | tail -1 |
        awk '{ printf "%d %.1f %.1f", $1, $2 / 1024, $3 / 1024 }')
    note "$kind: $(cat "$BENCH_TMP"/clients."$kind".*.log | xargs); at the peak: held, RSS, anon MiB $peak"
    # Closes every client socket (the processes exit).
    for n in "${clients[@]}"; do stop "$n"; done
    closed=$SECONDS
    # Each "after" figure, like the idle one, is that of a proxy that still
    # serves: one plain and one TLS request just before it (bellhop unmaps
    # the code an attack ran once it is over, and serving maps its own back).
    sleep 10
    serve_once
    after10=$(snapshot)
    sleep $((30 - (SECONDS - closed)))
    serve_once
    after30=$(snapshot)
    RESULT="$peak $after10 $after30"
    note "$kind: +10 s $after10, +30 s $after30"
}

# measure LABEL NAME — each attack on a freshly started proxy NAME, so one
# attack's leftovers do not hide the next one's cost; sets ROW.
measure() {
    local label=$1 name=$2 idle idle2 flood
    start_proxy "$name"
    idle=$(warm_idle)
    note "$label idle: RSS/anon MiB $idle"
    # IDLE_COUNT=0: the slow readers only (the idle columns stay empty).
    flood="0 0 0 0 0 0 0"
    if ((IDLE_COUNT > 0)); then
        attack idle "$IDLE_COUNT"
        flood=$RESULT
    fi
    stop_proxy
    start_proxy "$name"
    idle2=$(warm_idle)
    attack slowread "$SLOW_COUNT" "/bytes/$SLOW_BYTES"
    stop_proxy
    ROWS+=("$(row "$label" "$idle" "$flood" "$RESULT" "${idle%% *}" "${idle2%% *}")")
}

# warm_idle — a few requests, the settle of bench/run.sh's idle figure
# (settle_idle), then the "RSS anon" snapshot.
warm_idle() {
    for _ in $(seq 20); do curl -fsS -o /dev/null "http://$HTTP_ADDR/"; done
    settle_idle
    snapshot
}

# One table row: idle (before the first attack), then for each attack: connections held at the peak,
# peak RSS, KiB per connection held, RSS +10 s, +30 s (anonymous in brackets),
# and +30 s over the idle RSS of that attack's proxy.
row() {
    local label=$1 idle=$2 flood=$3 slow=$4 idle_rss=$5 idle2=$6
    awk -v l="$label" -v i="$idle" -v f="$flood" -v s="$slow" -v ir="$idle_rss" -v ir2="$idle2" 'BEGIN {
        split(i, I, " "); split(f, F, " "); split(s, S, " ")
        printf "| %s | %s (%s) | %d | %s (%s) | %.1f | %s (%s) | %s (%s) | %.2f× | %d | %s (%s) | %.0f | %s (%s) | %s (%s) | %.2f× |",
            l, I[1], I[2],
            F[1], F[2], F[3], (F[1] ? (F[2] - ir) * 1024 / F[1] : 0), F[4], F[5], F[6], F[7], (F[1] ? F[6] / ir : 0),
            S[1], S[2], S[3], (S[1] ? (S[2] - ir2) * 1024 / S[1] : 0), S[4], S[5], S[6], S[7], S[6] / ir2 }'
}

ROWS=()
for proxy in $PROXIES; do
    if [[ $proxy == bellhop ]]; then
        for variant in $VARIANTS; do
            case $variant in
                glibc) BELLHOP_ENV= ;;
                glibc-defaults) BELLHOP_ENV="GLIBC_TUNABLES=" ;;
                trim) BELLHOP_ENV="GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=2" ;;
                jemalloc) BELLHOP_ENV="LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0" ;;
                mimalloc) BELLHOP_ENV="LD_PRELOAD=$(ls /usr/lib/x86_64-linux-gnu/libmimalloc.so.* | head -1)" ;;
                *) die "unknown variant $variant" ;;
            esac
            note "bellhop ($variant): $BELLHOP_BIN"
            measure "bellhop ($variant)" bellhop
        done
    else
        note "$proxy"
        measure "$proxy" "$proxy"
    fi
done

echo
echo "memory under attack, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bellhop $BELLHOP_BIN ($(git describe --always --dirty)); $(nginx -v 2>&1 | sed 's/.*: //'); one worker each on CPU $PROXY_CPU"
echo "$IDLE_COUNT idle TCP connections (no ClientHello); $SLOW_COUNT TLS clients reading nothing of a $SLOW_BYTES-byte response"
echo "MiB: RSS (anonymous); KiB/conn = (peak RSS - idle RSS) / connections held at the peak; ×idle = RSS 30 s after the clients left / idle RSS"
echo
echo "| proxy | idle | idle conns held | peak | KiB/conn | +10 s | +30 s | ×idle | slow readers held | peak | KiB/reader | +10 s | +30 s | ×idle |"
echo "|---|---|---:|---|---:|---|---|---:|---:|---|---:|---|---|---:|"
printf '%s\n' "${ROWS[@]}"
