# Shared helpers for the bench/*.sh scripts; source it, do not run it.
#
#   source "$(dirname "$0")/lib.sh"     # cd's nowhere; sets BENCH_TMP, traps EXIT
#
# Every process started with `spawn` is stopped at exit and the temp dir removed
# (KEEP=1 keeps it for a look at the configs and logs).

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/bellhop-bench.XXXXXX")
BENCH_PIDS=()

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${KEEP:-} ]]; then echo "kept $BENCH_TMP" >&2; else rm -rf "$BENCH_TMP"; fi
}
trap bench_cleanup EXIT

die() { echo "error: $*" >&2; exit "${DIE_CODE:-1}"; }
note() { echo "# $*" >&2; }

# require_commands "command:package" ... — exits 3 listing the Debian packages that
# provide missing commands, or installs them when INSTALL=1 (never otherwise).
require_commands() {
    local want missing=() pkgs=()
    for want in "$@"; do
        command -v "${want%%:*}" >/dev/null || { missing+=("${want%%:*}"); pkgs+=("${want#*:}"); }
    done
    ((${#missing[@]} == 0)) && return 0
    mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
    if [[ ${INSTALL:-} != 1 ]]; then
        echo "missing commands: ${missing[*]}" >&2
        echo "install the Debian packages: apt-get install ${pkgs[*]}   (or rerun with INSTALL=1)" >&2
        exit 3
    fi
    local sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    note "INSTALL=1: installing ${pkgs[*]}"
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${pkgs[@]}"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# spawn LOGFILE COMMAND... — runs COMMAND in the background, remembers its pid in
# SPAWNED (and for cleanup).
spawn() {
    local log=$1; shift
    "$@" >"$log" 2>&1 &
    SPAWNED=$!
    BENCH_PIDS+=("$SPAWNED")
}

# stop PID — stops one spawned process (and its children, which exit with it).
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# wait_until SECONDS COMMAND... — polls COMMAND every 50 ms until it succeeds;
# gives up early when the process WAIT_PID (if set) has exited.
wait_until() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        [[ -z ${WAIT_PID:-} ]] || kill -0 "$WAIT_PID" 2>/dev/null || return 1
        sleep 0.05
    done
}

# start_backend [CPU] — bench-backend, pinned to CPU when given; sets BACKEND (host:port).
start_backend() {
    local pin=(); [[ -n ${1:-} ]] && pin=(taskset -c "$1")
    spawn "$BENCH_TMP/backend.log" "${pin[@]}" target/release/examples/bench-backend
    wait_until 20 grep -q listening "$BENCH_TMP/backend.log" || die "backend did not start"
    BACKEND=$(awk '/listening/ {print $2; exit}' "$BENCH_TMP/backend.log")
}

# tree_pids PID — PID and all its descendants, comma-separated.
tree_pids() {
    local all=$1 frontier=$1 kids
    while kids=$(pgrep -d, -P "$frontier"); do
        all+=",$kids"; frontier=$kids
    done
    echo "$all"
}

# cpu_ticks PIDS [kernel] — utime+stime (clock ticks) summed over
# comma-separated PIDS; with "kernel", stime alone (time in system calls and
# the kernel work they cause).
cpu_ticks() {
    local pid total=0 stat f
    for pid in ${1//,/ }; do
        stat=$(<"/proc/$pid/stat") || continue
        stat=${stat##*) }                   # the command name may contain spaces
        read -r -a f <<<"$stat"
        if [[ ${2:-} == kernel ]]; then
            total=$((total + f[12]))        # field 15 of stat(5)
        else
            total=$((total + f[11] + f[12])) # fields 14 and 15
        fi
    done
    echo "$total"
}

# rss_kib PIDS — VmRSS summed over comma-separated PIDS.
rss_kib() {
    local pid total=0 kib
    for pid in ${1//,/ }; do
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# make_cert DIR — a throw-away ECDSA P-256 CA and a leaf for 127.0.0.1/localhost:
# DIR/ca.pem, DIR/cert.pem (leaf + CA), DIR/key.pem, DIR/combined.pem (HAProxy).
make_cert() {
    local d=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=bellhop bench CA" -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout "$d/key.pem" -out "$d/leaf.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext"
    openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext" -out "$d/leaf.pem" 2>/dev/null
    cat "$d/leaf.pem" "$d/ca.pem" >"$d/cert.pem"
    cat "$d/cert.pem" "$d/key.pem" >"$d/combined.pem"
}

# median NUMBER... — the middle one (the mean of the middle two for an even count).
median() {
    printf '%s\n' "$@" | sort -g |
        awk '{ a[NR] = $1 } END { m = int((NR + 1) / 2); printf "%.10g\n", NR % 2 ? a[m] : (a[m] + a[m + 1]) / 2 }'
}

# to_ms VALUE — "812.00us", "1.52ms", "2.1s" (wrk's units) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n }'
}
