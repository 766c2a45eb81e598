#!/usr/bin/env bash
# Idle RSS of bellhop builds side by side, split by where the pages are: what a
# fresh `bellhop run` (one worker, bench/run.sh's Proxyfile) holds after one
# plain HTTP and one TLS request, then IDLE_SETTLE (8) seconds idle and one
# more of each (settle_idle, bench/proxies.sh): the "idle RSS" row of
# bench/run.sh. Builds
# take turns, ROUNDS times, so each figure is from the same minute on the same
# machine; the table has each build's median round (by RSS). bench/RESULTS.md
# ("Where idle memory goes") records a run.
#
#   bench/idle-rss.sh target/release/bellhop                  # one build
#   bench/idle-rss.sh before=/tmp/bellhop-old after=target/release/bellhop
#   PEERS=haproxy bench/idle-rss.sh target/release/bellhop   # and HAProxy's RSS
#
# Columns (KiB, bench/smaps_split.py): RSS, anonymous, and the executable's
# code, read-only segment (relocation tables, .rodata, unwind tables), relro
# (.data.rel.ro and GOT, written by the loader), data; shared libraries; other
# anonymous mappings (heap, stacks). PEERS (proxies of bench/proxies.sh, e.g.
# "haproxy nginx") get the same start and requests; their row has RSS and
# anonymous, summed over their processes.
#
# Settings (environment): ROUNDS (5), PROXY_CPU (0), BACKEND_BIN (the backend
# to start: target/release/examples/bench-backend; its speed does not matter
# for one request), or BACKEND (host:port of one already running).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/proxies.sh

ROUNDS=${ROUNDS:-5}
PROXY_CPU=${PROXY_CPU:-0}
require_commands openssl:openssl taskset:util-linux python3:python3 curl:curl
(($# > 0)) || die "usage: $0 [NAME=]BINARY..."

make_cert "$BENCH_TMP"
if [[ -z ${BACKEND:-} ]]; then
    BACKEND_BIN=${BACKEND_BIN:-target/release/examples/bench-backend}
    [[ -x $BACKEND_BIN ]] ||
        die "no $BACKEND_BIN: cargo build --release --example bench-backend, or set BACKEND"
    spawn "$BENCH_TMP/backend.log" "$BACKEND_BIN"
    wait_until 20 grep -q listening "$BENCH_TMP/backend.log" || die "backend did not start"
    BACKEND=$(awk '/listening/ {print $2; exit}' "$BENCH_TMP/backend.log")
fi

NAMES=()
declare -A BIN
for arg in "$@"; do
    name=${arg%%=*}; [[ $arg == *=* ]] || name=$(basename "$arg")
    [[ -x ${arg#*=} ]] || die "not executable: ${arg#*=}"
    # A fresh copy of each: the kernel maps a binary's pages in page-cache folios
    # (ext4 has large folios since Linux 6.16) whose sizes depend on how the file
    # got into the cache, so every build starts from the same state, that of a
    # binary just written (by the linker, cp or dpkg).
    BIN[$name]=$BENCH_TMP/bin-$name
    cp "${arg#*=}" "${BIN[$name]}"
    NAMES+=("$name")
done

# Each round starts every build once (start_proxy sends one HTTP and one HTTPS
# request before it returns) and records its split.
for ((round = 1; round <= ROUNDS; round++)); do
    for name in "${NAMES[@]}"; do
        BELLHOP_BIN=${BIN[$name]}
        start_proxy bellhop
        settle_idle
        echo "$name $(python3 bench/smaps_split.py "$PROXY_MAIN")" >>"$BENCH_TMP/samples"
        stop_proxy
    done
    for name in ${PEERS:-}; do
        start_proxy "$name"
        settle_idle
        anon=0
        for pid in ${PROXY_PIDS//,/ }; do
            anon=$((anon + $(awk '/^Anonymous:/ {print $2}' "/proc/$pid/smaps_rollup")))
        done
        echo "$name rss=$(rss_kib "$PROXY_PIDS") anon=$anon" >>"$BENCH_TMP/samples"
        stop_proxy
    done
done

echo "idle RSS after one HTTP and one TLS request, $(date -u '+%Y-%m-%d %H:%M UTC'),"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg), median of $ROUNDS rounds (KiB)"
echo
python3 - "$BENCH_TMP/samples" "${NAMES[@]}" ${PEERS:-} <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, *pairs = line.split()
    rows.setdefault(name, []).append({k: int(v) for k, v in (p.split("=") for p in pairs)})
cols = ["rss", "anon", "code", "ro", "relro", "data", "libs", "other"]
print("| build | " + " | ".join(cols) + " |")
print("|---|" + "---:|" * len(cols))
for name in sys.argv[2:]:
    samples = sorted(rows[name], key=lambda s: s["rss"])
    mid = samples[len(samples) // 2]
    print(f"| {name} | " + " | ".join(str(mid.get(c, "-")) for c in cols) + " |")
PY
