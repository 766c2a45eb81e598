#!/usr/bin/env bash
# One million distinct client addresses sprayed at bellhop's rate limiter: RSS
# before, while, and 30 s after, against the documented ceiling.
#
# A million real source addresses cannot be had on loopback, so the spray goes
# through the trusted-proxy path the limiter really uses: bellhop trusts
# 127.0.0.1 (`trusted-proxies "127.0.0.1"`), and wrk sends every request with an
# X-Forwarded-For address that no other request used
# (bench/attack/ratelimit-spray.lua), so each request is a new client to the
# limiter, keyed exactly as a real one would be (client IP after the trusted
# proxies). The site answers with `respond`, so no backend is involved.
#
# The ceiling: idle RSS (about 9 MiB) plus one limiter at its cap of 65,536
# client buckets (src/limit/rate.rs, about 5 MiB of tables) plus slack for
# the load's connections: 24 MiB. An unbounded map would pass it after a few
# hundred thousand addresses.
# Not part of the test suite.
#
#   bench/attack/ratelimit-spray.sh                    # 1,000,000 addresses
#   ADDRESSES=200000 bench/attack/ratelimit-spray.sh   # shorter
#   BELLHOP_BIN=/tmp/bellhop-rel bench/attack/ratelimit-spray.sh
#
# Settings (environment):
#   ADDRESSES     distinct addresses to send                 1000000
#   CEILING_MIB   RSS the run must stay under (exit 1 above)  24
#   BELLHOP_BIN   the bellhop binary                         target/release/bellhop (built)
#   PROXY_CPU, LOAD_CPU                                      0, 1
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh

ADDRESSES=${ADDRESSES:-1000000}
CEILING_MIB=${CEILING_MIB:-24}
BELLHOP_BIN=${BELLHOP_BIN:-target/release/bellhop}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
require_commands wrk:wrk taskset:util-linux curl:curl python3:python3
[[ $BELLHOP_BIN != target/release/bellhop ]] || cargo build --release --quiet --bin bellhop

port=$(free_port)
cat >"$BENCH_TMP/Proxyfile" <<KDL
options {
    state-dir "$BENCH_TMP/state"
    workers 1
    trusted-proxies "127.0.0.1"
}
"http://127.0.0.1:$port" {
    rate-limit "10/s" burst=20
    respond "ok"
}
KDL
spawn "$BENCH_TMP/bellhop.log" taskset -c "$PROXY_CPU" "$BELLHOP_BIN" run --config "$BENCH_TMP/Proxyfile" --log-level error
pid=$SPAWNED
url="http://127.0.0.1:$port/"
WAIT_PID=$pid wait_until 30 curl -fsS -o /dev/null "$url" || { cat "$BENCH_TMP/bellhop.log" >&2; die "bellhop did not start"; }

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
for _ in $(seq 20); do curl -fsS -o /dev/null -H "X-Forwarded-For: 192.0.2.1" "$url" || true; done
idle=$(rss_kib "$pid")
note "bellhop $BELLHOP_BIN pid $pid, idle RSS $(mib "$idle") MiB"

# wrk in 10 s rounds until ADDRESSES are sent; RSS after each round.
next=0 peak=$idle sent=0 started=$SECONDS
while ((next < ADDRESSES)); do
    out=$(taskset -c "$LOAD_CPU" wrk -t2 -c32 -d10s -s bench/attack/ratelimit-spray.lua "$url" -- "$next" 2)
    next=$(awk '/^next/ {print $2}' <<<"$out")
    sent=$((sent + $(awk '/requests in/ {print $1}' <<<"$out")))
    rss=$(rss_kib "$pid"); ((rss > peak)) && peak=$rss
    note "addresses used: $next; requests answered: $sent; RSS $(mib "$rss") MiB"
done
elapsed=$((SECONDS - started))
sleep 30
after=$(rss_kib "$pid")
statuses=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Forwarded-For: 10.0.0.0" "$url")

echo
echo "rate-limit spray, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bellhop $BELLHOP_BIN ($(git describe --always --dirty)), workers 1; wrk -t2 -c32, one new X-Forwarded-For address per request"
echo "| addresses | requests | seconds | idle RSS MiB | peak RSS MiB | RSS 30 s later MiB | ceiling MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
echo "| $next | $sent | $elapsed | $(mib "$idle") | $(mib "$peak") | $(mib "$after") | $CEILING_MIB |"
note "the first address, long evicted, asks again: HTTP $statuses"
((peak < CEILING_MIB * 1024)) || { echo "peak RSS over the ceiling"; exit 1; }
