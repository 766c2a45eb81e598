#!/usr/bin/env bash
# Slow clients against bellhop: slowhttptest (Debian package) in slowloris (-H),
# slow body (-B) and slow read (-X) mode, one after the other, against a spawned
# `bellhop run` proxying plain HTTP to bench/backend.rs. Meanwhile an ordinary
# client makes one request on a fresh connection every 100 ms and counts its
# successes, and bellhop's open files and RSS are sampled. After each attack the
# script waits (bounded) for the open files to return to the baseline.
#
# Not part of the test suite: about 40 s per mode. Only 127.0.0.1 is used.
#
#   bench/attack/slowloris.sh                        # debug build, 300 connections, 30 s per mode
#   PROFILE=release CONNECTIONS=500 bench/attack/slowloris.sh
#   MODES="H" HEADER_TIMEOUT=30s bench/attack/slowloris.sh
#   NOFILE=1024 MODES=B CONNECTIONS=600 bench/attack/slowloris.sh   # run bellhop with a 1024-fd limit
#
# Settings (environment):
#   MODES            which attacks, among H B X                      (default "H B X")
#   CONNECTIONS      slowhttptest connections per attack              (300)
#   RATE             new attack connections per second                (100)
#   DURATION         seconds per attack, at most 30                   (30)
#   HEADER_TIMEOUT   bellhop's client-header-timeout                  (10s, to see it act within DURATION)
#   PER_IP           bellhop's max-connections-per-ip                 (65536: attack and probe
#                    share 127.0.0.1, so the default 256 would refuse both past 256)
#   NOFILE           open-file limit for bellhop (ulimit -n)          (inherited)
#   PROFILE          debug or release build                           (debug)
#   SETTLE           seconds to wait for fds to return to baseline    (60)
set -euo pipefail
cd "$(dirname "$0")/../.."

MODES=${MODES:-H B X}
CONNECTIONS=${CONNECTIONS:-300}
RATE=${RATE:-100}
DURATION=${DURATION:-30}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-10s}
NOFILE=${NOFILE:-}
PROFILE=${PROFILE:-debug}
SETTLE=${SETTLE:-60}
((DURATION <= 30)) || { echo "DURATION is at most 30 (seconds)" >&2; exit 2; }

if ! command -v slowhttptest >/dev/null; then
    echo "installing slowhttptest (Debian package)" >&2
    sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq slowhttptest
fi

echo "building $PROFILE binaries..." >&2
build=(); [[ $PROFILE == release ]] && build=(--release)
cargo build "${build[@]}" --quiet --bin bellhop --example bench-backend
bin=target/$PROFILE

tmp=$(mktemp -d)
pids=()
cleanup() {
    touch "$tmp/stop"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n ${KEEP:-} ]] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT

wait_for_line() { # file pattern
    for _ in $(seq 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

"$bin/examples/bench-backend" >"$tmp/backend.out" &
pids+=($!)
backend_pid=$!
wait_for_line "$tmp/backend.out" listening
backend=$(awk '/listening/ {print $2; exit}' "$tmp/backend.out")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/Proxyfile" <<PROXYFILE
options {
    state-dir "$tmp/state"
    client-header-timeout "$HEADER_TIMEOUT"
    max-connections-per-ip ${PER_IP:-65536}
}
"http://127.0.0.1:$port" {
    proxy "$backend"
}
PROXYFILE
(
    [[ -n $NOFILE ]] && ulimit -n "$NOFILE"
    exec "$bin/bellhop" run --config "$tmp/Proxyfile" --log-level warn 2>"$tmp/bellhop.err"
) &
pids+=($!)
bellhop_pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 200); do
    curl -fsS -o /dev/null "$url/" 2>/dev/null && break
    sleep 0.05
done
curl -fsS -o /dev/null "$url/" || { cat "$tmp/bellhop.err" >&2; exit 1; }

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# One GET on a fresh connection every 100 ms until $tmp/stop exists:
# "status seconds" per line (status 000 = no answer within 3 s).
probe() { # outfile
    while [[ ! -e $tmp/stop ]]; do
        curl -s -o /dev/null --max-time 3 -w '%{http_code} %{time_total}\n' "$url/" >>"$1" || true
        sleep 0.1
    done
}
# bellhop's and the backend's fds and bellhop's RSS every 250 ms until $tmp/stop exists.
sample() { # outfile
    while [[ ! -e $tmp/stop ]]; do
        echo "$(fds "$bellhop_pid") $(rss_kib "$bellhop_pid") $(fds "$backend_pid")" >>"$1"
        sleep 0.25
    done
}

attack_args() { # mode
    case $1 in
        H) echo "-H -i 5 -x 24 -u $url/" ;;
        B) echo "-B -i 5 -x 10 -s 1048576 -u $url/" ;;
        X) echo "-X -w 512 -y 1024 -n 5 -z 32 -k 3 -u $url/bytes/1048576" ;;
        *) echo "unknown mode $1 (H, B or X)" >&2; exit 2 ;;
    esac
}
mode_name() { case $1 in H) echo slowloris ;; B) echo "slow body" ;; X) echo "slow read" ;; esac; }

# Warm up, then the idle baseline.
for _ in $(seq 20); do curl -fsS -o /dev/null "$url/"; done
echo "bellhop pid $bellhop_pid on $url, open-file limit $(awk '/Max open files/ {print $4}' "/proc/$bellhop_pid/limits"), client-header-timeout $HEADER_TIMEOUT" >&2

results=()
for mode in $MODES; do
    args=$(attack_args "$mode")
    base_fds=$(fds "$bellhop_pid"); base_rss=$(rss_kib "$bellhop_pid"); base_backend=$(fds "$backend_pid")
    rm -f "$tmp/stop" "$tmp/probe.$mode" "$tmp/sample.$mode"
    probe "$tmp/probe.$mode" & probe_pid=$!
    sample "$tmp/sample.$mode" & sample_pid=$!
    echo "== $(mode_name "$mode"): slowhttptest $args -c $CONNECTIONS -r $RATE -l $DURATION" >&2
    # shellcheck disable=SC2086 # $args is a list of options
    slowhttptest $args -c "$CONNECTIONS" -r "$RATE" -l "$DURATION" -p 3 -g -o "$tmp/slow.$mode" \
        >"$tmp/slow.$mode.out" 2>&1 || true
    touch "$tmp/stop"
    wait "$probe_pid" "$sample_pid" 2>/dev/null || true

    # Recovery: how long until bellhop's open files are back to the baseline.
    settled=""
    start=$(date +%s.%N)
    for _ in $(seq $((SETTLE * 10))); do
        if (($(fds "$bellhop_pid") <= base_fds)); then
            settled=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }')
            break
        fi
        sleep 0.1
    done
    after_fds=$(fds "$bellhop_pid"); after_rss=$(rss_kib "$bellhop_pid"); after_backend=$(fds "$backend_pid")
    after_ok=$(curl -s -o /dev/null --max-time 3 -w '%{http_code}' "$url/" || true)

    total=$(wc -l <"$tmp/probe.$mode")
    ok=$(awk '$1 == 200' "$tmp/probe.$mode" | wc -l)
    p50=$(awk '$1 == 200 {print $2}' "$tmp/probe.$mode" | sort -n | awk '{a[NR]=$1} END { if (NR) printf "%.0f", a[int((NR+1)/2)] * 1000; else print "-" }')
    worst=$(awk '{print $2}' "$tmp/probe.$mode" | sort -n | tail -1 | awk '{printf "%.0f", $1 * 1000}')
    peak_fds=$(awk 'BEGIN {m=0} $1 > m {m=$1} END {print m}' "$tmp/sample.$mode")
    peak_rss=$(awk 'BEGIN {m=0} $2 > m {m=$2} END {print m}' "$tmp/sample.$mode")
    peak_backend=$(awk 'BEGIN {m=0} $3 > m {m=$3} END {print m}' "$tmp/sample.$mode")
    # slowhttptest's CSV: seconds,closed,pending,connected,service available.
    held=$(awk -F, 'NR > 1 && $4 > m {m=$4} END {print m + 0}' "$tmp/slow.$mode.csv" 2>/dev/null || echo "?")
    held_end=$(awk -F, 'NR > 1 {c=$4} END {print c + 0}' "$tmp/slow.$mode.csv" 2>/dev/null || echo "?")
    unavailable=$(awk -F, 'NR > 1 && $5 == 0 {n++} END {print n + 0}' "$tmp/slow.$mode.csv" 2>/dev/null || echo "?")
    grep -E "test duration|connections|service available|Exit status" "$tmp/slow.$mode.out" | tail -3 | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/   slowhttptest: /' >&2 || true
    results+=("$(printf '%-10s %6s %6s %8s %8s %10s %8s %12s %12s %10s %10s %s' \
        "$(mode_name "$mode" | tr ' ' '-')" "$held" "$held_end" "$ok/$total" "${p50}ms" "${worst}ms" "$unavailable" \
        "$base_fds/$peak_fds/$after_fds" "$(mib "$base_rss")/$(mib "$peak_rss")/$(mib "$after_rss")" \
        "$base_backend/$peak_backend/$after_backend" "${settled:-no (${SETTLE}s)}" "$after_ok")")
done

echo
echo "$CONNECTIONS connections at $RATE/s for ${DURATION}s per attack; probe: one GET per 100 ms, fresh connection, 3 s limit"
printf '%-10s %6s %6s %8s %8s %10s %8s %12s %12s %10s %10s %s\n' \
    attack held@max held@end probe-ok p50 worst unavail fds:b/peak/a "RSS MiB:b/p/a" upstream-fds settled after
for r in "${results[@]}"; do echo "$r"; done
if [[ -s $tmp/bellhop.err ]]; then
    # Timestamps and ports dropped, so equal lines count together.
    echo; echo "bellhop stderr (count, line):"
    sed -E -e 's/^[^ ]+ +//' -e 's/(127\.0\.0\.1:|port=)[0-9]+/\1PORT/g' "$tmp/bellhop.err" |
        sort | uniq -c | sort -rn | head
fi
kill -0 "$bellhop_pid" 2>/dev/null && echo "bellhop still running" || { echo "bellhop DIED"; exit 1; }
