#!/usr/bin/env bash
# gzip of small static CSS responses, bellhop vs Caddy, side by side.
#
#   bench/encode.sh                       # both, 3 rounds of 10 s each
#   DURATION=5s ROUNDS=1 bench/encode.sh
#   SIZE=16384 bench/encode.sh            # CSS file size in bytes (default 8192)
#   BELLHOP=/tmp/other-bellhop bench/encode.sh   # compare another build
#
# The same file (a generated stylesheet, realistic enough that gzip shrinks it
# about 4x, not a run of one repeated rule) is served by each proxy from its own
# static-file handler with gzip on: bellhop `files` + `encode gzip`, Caddy
# `file_server` + `encode gzip`. Each runs one worker (bellhop `workers 1`,
# Caddy GOMAXPROCS=1) pinned to CPU $PROXY_CPU; wrk runs on the other CPU with
# `Accept-Encoding: gzip`, 32 connections, HTTP/1.1 keep-alive. The script
# checks that each answer really is gzip before measuring, prints requests/s
# and the proxy's CPU time per request (user + system, from /proc: steadier
# than requests/s on a busy machine) per round, the median per proxy and
# bellhop/Caddy, and the same without Accept-Encoding (no compression) for
# reference.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

require_commands wrk:wrk caddy:caddy curl:curl taskset:util-linux
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-8192}
CONNECTIONS=${CONNECTIONS:-32}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BELLHOP=${BELLHOP:-target/release/bellhop}
if [[ $BELLHOP == target/release/bellhop ]]; then
    cargo build --release --bin bellhop >&2
fi

ROOT=$BENCH_TMP/root
mkdir -p "$ROOT"
python3 - "$ROOT/app.css" "$SIZE" <<'PY'
import random, sys
random.seed(15)
props = ["color", "margin", "padding", "border-radius", "font-size", "line-height",
         "background", "display", "gap", "max-width", "box-shadow", "transition"]
out = []
i = 0
while sum(map(len, out)) < int(sys.argv[2]):
    sel = random.choice([".card", ".nav", ".btn", "#main", ".post", "h2", ".grid"])
    rules = "".join(f"  {random.choice(props)}: {random.randint(0, 999)}{random.choice(['px','rem','%',''])};\n"
                    for _ in range(random.randint(2, 6)))
    out.append(f"{sel}-{i} > .{random.choice('abcdefgh')}{i % 97} {{\n{rules}}}\n")
    i += 1
open(sys.argv[1], "w").write("".join(out)[: int(sys.argv[2])])
PY

start() {
    local name=$1 dir=$BENCH_TMP/$1 port
    mkdir -p "$dir"
    port=$(free_port)
    ADDR=127.0.0.1:$port
    case $name in
        bellhop)
            cat >"$dir/Proxyfile" <<KDL
options {
    state-dir "$dir/state"
    http-port $(free_port)
    https-port $(free_port)
    workers 1
}
"http://127.0.0.1:$port" {
    encode gzip
    files "$ROOT"
}
KDL
            CMD=("$BELLHOP" run --config "$dir/Proxyfile" --log-level error) ;;
        caddy)
            cat >"$dir/Caddyfile" <<CADDY
{
    admin off
    http_port $(free_port)
    https_port $(free_port)
    storage file_system $dir/data
    log {
        level ERROR
    }
}
http://127.0.0.1:$port {
    root * $ROOT
    encode gzip
    file_server
}
CADDY
            CMD=(env GOMAXPROCS=1 HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config"
                caddy run --config "$dir/Caddyfile" --adapter caddyfile) ;;
    esac
    spawn "$dir/stderr.log" taskset -c "$PROXY_CPU" "${CMD[@]}"
    PID=$SPAWNED
    WAIT_PID=$PID wait_until 30 curl -fsS -o /dev/null "http://$ADDR/app.css" ||
        { cat "$dir/stderr.log" >&2; die "$name did not serve http://$ADDR/app.css"; }
    local enc
    enc=$(curl -fsS -o /dev/null -D - -H 'Accept-Encoding: gzip' "http://$ADDR/app.css" |
        awk 'tolower($1) == "content-encoding:" {print $2}' | tr -d '\r')
    [[ $enc == gzip ]] || die "$name did not gzip app.css (Content-Encoding: '$enc')"
}

# measure [HEADER...] — "requests/s cpu-µs/request" of wrk against $ADDR/app.css.
measure() {
    local args=() h out t0 t1 pids
    for h in "$@"; do args+=(-H "$h"); done
    pids=$(tree_pids "$PID")
    t0=$(cpu_ticks "$pids")
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${args[@]}" \
        "http://$ADDR/app.css")
    t1=$(cpu_ticks "$pids")
    awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
        /requests in/ {n = $1}
        /Requests\/sec/ {rps = $2}
        END {printf "%d %.1f", rps, ticks / hz * 1e6 / n}' <<<"$out"
}

declare -A GZ PLAIN GZ_CPU PLAIN_CPU
for name in bellhop caddy; do
    start "$name"
    gz=() plain=() gz_cpu=() plain_cpu=()
    for ((r = 1; r <= ROUNDS; r++)); do
        read -r rps cpu <<<"$(measure 'Accept-Encoding: gzip')"
        gz+=("$rps"); gz_cpu+=("$cpu")
        read -r rps cpu <<<"$(measure)"
        plain+=("$rps"); plain_cpu+=("$cpu")
        note "$name round $r: gzip ${gz[-1]} req/s (${gz_cpu[-1]} µs CPU/req), identity ${plain[-1]} req/s (${plain_cpu[-1]} µs CPU/req)"
    done
    GZ[$name]=$(median "${gz[@]}"); GZ_CPU[$name]=$(median "${gz_cpu[@]}")
    PLAIN[$name]=$(median "${plain[@]}"); PLAIN_CPU[$name]=$(median "${plain_cpu[@]}")
    stop "$PID"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

gzip_size=$(gzip -6 -c "$ROOT/app.css" | wc -c)
echo "app.css: $SIZE bytes ($gzip_size gzipped at level 6); $CONNECTIONS connections, $DURATION x $ROUNDS rounds (median)"
echo "bellhop $($BELLHOP --version 2>/dev/null | awk '{print $2}') $(git describe --always --dirty); Caddy $(caddy version | awk '{print $1}')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %10s %10s %14s\n' "" "bellhop" "caddy" "bellhop/caddy"
printf '%-24s %10s %10s %14s\n' "gzip req/s" "${GZ[bellhop]}" "${GZ[caddy]}" "$(ratio "${GZ[bellhop]}" "${GZ[caddy]}")"
printf '%-24s %10s %10s %14s\n' "gzip CPU µs/request" "${GZ_CPU[bellhop]}" "${GZ_CPU[caddy]}" "$(ratio "${GZ_CPU[bellhop]}" "${GZ_CPU[caddy]}")"
printf '%-24s %10s %10s %14s\n' "identity req/s" "${PLAIN[bellhop]}" "${PLAIN[caddy]}" "$(ratio "${PLAIN[bellhop]}" "${PLAIN[caddy]}")"
printf '%-24s %10s %10s %14s\n' "identity CPU µs/request" "${PLAIN_CPU[bellhop]}" "${PLAIN_CPU[caddy]}" "$(ratio "${PLAIN_CPU[bellhop]}" "${PLAIN_CPU[caddy]}")"
