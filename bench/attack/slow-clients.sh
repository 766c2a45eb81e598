#!/usr/bin/env bash
# Slow clients against bellhop, nginx and Caddy side by side, in one run:
# slowhttptest (Debian package) in slowloris (-H), slow body (-B) and slow read
# (-X) mode, each against each proxy in front of the same bench/backend.rs,
# while a probe makes one ordinary GET every 100 ms on a fresh connection.
#
# Every proxy runs at its defaults (Debian's for nginx: worker_processes auto,
# worker_connections 768, which counts upstream sockets too). The attack comes
# from 127.0.0.1 and the probe from 127.0.0.2, so a per-address cap (bellhop's
# max-connections-per-ip, default 256) acts on the attacker only, as it would
# for a remote attacker and a different visitor. Only loopback is used.
#
# bench/attack/slowloris.sh is the bellhop-only version with open files and
# RSS in detail; this one is for the comparison.
#
#   bench/attack/slow-clients.sh                       # builds target/release/bellhop
#   BELLHOP=/tmp/bellhop-rel bench/attack/slow-clients.sh
#   PROXIES="bellhop nginx" MODES="H" CONNECTIONS=2000 bench/attack/slow-clients.sh
#
# Settings (environment):
#   PROXIES      among bellhop bellhop-nocap nginx caddy    (default "bellhop nginx caddy";
#                bellhop-nocap: max-connections-per-ip 65536, as for an attack from many addresses)
#   MODES        among H B X                                (default "H B X")
#   CONNECTIONS  slowhttptest connections per attack        (1000)
#   RATE         new attack connections per second          (200)
#   DURATION     seconds per attack                         (30)
#   BELLHOP      bellhop binary         (target/release/bellhop, built when missing)
#   BACKEND_BIN  bench backend binary   (target/release/examples/bench-backend, built when missing)
#   INSTALL=1    install slowhttptest/nginx/caddy with apt-get when missing
#
# Prints one line per proxy and attack: connections the attacker held at most
# and at the end, the probe's successes, its p50 and p99 latency over every
# attempt (a failed attempt counts with the time it took to fail, at most 3 s),
# and the proxy's peak RSS (all its processes).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/lib.sh

PROXIES=${PROXIES:-bellhop nginx caddy}
MODES=${MODES:-H B X}
CONNECTIONS=${CONNECTIONS:-1000}
RATE=${RATE:-200}
DURATION=${DURATION:-30}
BELLHOP=${BELLHOP:-target/release/bellhop}
BACKEND_BIN=${BACKEND_BIN:-target/release/examples/bench-backend}
PROBE_FROM=127.0.0.2

require_commands slowhttptest:slowhttptest nginx:nginx caddy:caddy curl:curl
# slowhttptest needs a descriptor per connection, and so does each proxy.
ulimit -n "$(ulimit -Hn)"
((CONNECTIONS + 100 <= $(ulimit -n))) || die "open-file limit $(ulimit -n) is below CONNECTIONS + 100"
if [[ ! -x $BELLHOP || ! -x $BACKEND_BIN ]]; then
    note "building release binaries (slow: pass BELLHOP= and BACKEND_BIN= to skip)"
    cargo build --release --quiet --bin bellhop --example bench-backend
fi

spawn "$BENCH_TMP/backend.log" "$BACKEND_BIN"
WAIT_PID=$SPAWNED wait_until 20 grep -q listening "$BENCH_TMP/backend.log" || die "backend did not start"
BACKEND=$(awk '/listening/ {print $2; exit}' "$BENCH_TMP/backend.log")

# start_front NAME PORT — NAME at its defaults on 127.0.0.1:PORT in front of
# $BACKEND; sets FRONT_PID (the main process; nginx's workers are its children).
start_front() {
    local name=$1 port=$2 dir=$BENCH_TMP/$1
    mkdir -p "$dir"
    case $name in
        bellhop | bellhop-nocap)
            # bellhop-nocap: max-connections-per-ip out of the way, so the
            # attacker holds as many connections as against the others (an
            # attack from many addresses).
            local per_ip=""
            [[ $name == bellhop ]] || per_ip="; max-connections-per-ip 65536"
            printf 'options { state-dir "%s/state"%s }\n"http://127.0.0.1:%s" { proxy "%s" }\n' \
                "$dir" "$per_ip" "$port" "$BACKEND" >"$dir/Proxyfile"
            spawn "$dir/log" "$BELLHOP" run --config "$dir/Proxyfile" --log-level warn ;;
        nginx)
            # Debian's /etc/nginx/nginx.conf settings that matter here; `user
            # root` only because the temp dirs (bodies over 16 KiB go to disk)
            # are this script's.
            cat >"$dir/nginx.conf" <<NGINX
daemon off;
user root;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 768; }
http {
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    access_log off;
    client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fcgi;
    uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://$BACKEND; }
    }
}
NGINX
            spawn "$dir/log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ;;
        caddy)
            printf '{\n\tadmin off\n\tauto_https off\n\tstorage file_system %s/data\n}\nhttp://127.0.0.1:%s {\n\treverse_proxy %s\n}\n' \
                "$dir" "$port" "$BACKEND" >"$dir/Caddyfile"
            spawn "$dir/log" env HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir" \
                caddy run --config "$dir/Caddyfile" --adapter caddyfile ;;
        *) die "unknown proxy $name (bellhop, bellhop-nocap, nginx or caddy)" ;;
    esac
    FRONT_PID=$SPAWNED
    WAIT_PID=$FRONT_PID wait_until 30 curl -sf -o /dev/null "http://127.0.0.1:$port/" \
        || { cat "$dir/log" >&2; die "$name did not start"; }
}

front_version() {
    case $1 in
        bellhop*) echo "$1: $BELLHOP" ;;
        nginx) nginx -v 2>&1 | sed 's/.*: //' ;;
        caddy) echo "Caddy $(caddy version | awk '{print $1}')" ;;
    esac
}

# One GET on a fresh connection from $PROBE_FROM every 100 ms until $BENCH_TMP/stop
# exists: "status seconds" per line (000: no answer within 3 s).
probe() { # url outfile
    while [[ ! -e $BENCH_TMP/stop ]]; do
        curl -s -o /dev/null --interface "$PROBE_FROM" --max-time 3 \
            -w '%{http_code} %{time_total}\n' "$1" >>"$2" || true
        sleep 0.1
    done
}
# Peak RSS (KiB) of the proxy's process tree, sampled every 250 ms until stop.
sample_rss() { # pid outfile
    local peak=0 now
    while [[ ! -e $BENCH_TMP/stop ]]; do
        now=$(rss_kib "$(tree_pids "$1")")
        ((now > peak)) && peak=$now
        sleep 0.25
    done
    echo "$peak" >"$2"
}

attack_args() { # mode url
    case $1 in
        H) echo "-H -i 5 -x 24 -u $2/" ;;
        B) echo "-B -i 5 -x 10 -s 1048576 -u $2/" ;;
        X) echo "-X -w 512 -y 1024 -n 5 -z 32 -k 3 -u $2/bytes/1048576" ;;
        *) die "unknown mode $1 (H, B or X)" ;;
    esac
}
mib_of() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
mode_name() { case $1 in H) echo slowloris ;; B) echo slow-body ;; X) echo slow-read ;; esac; }

# percentile P FILE — the P-th percentile (nearest rank) of column 2, in ms.
percentile() {
    awk '{print $2}' "$2" | sort -n |
        awk -v p="$1" '{a[NR] = $1} END { if (!NR) { print "-"; exit }
            r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; printf "%.0f", a[r] * 1000 }'
}

note "load before: $(uptime | sed 's/.*load/load/')"
note "$CONNECTIONS connections at $RATE/s for ${DURATION}s per attack; probe: GET every 100 ms from $PROBE_FROM, fresh connection, 3 s limit"
lines=()
for name in $PROXIES; do
    port=$(free_port)
    start_front "$name" "$port"
    url="http://127.0.0.1:$port"
    note "$(front_version "$name") on $url"
    for mode in $MODES; do
        rm -f "$BENCH_TMP/stop"
        out=$BENCH_TMP/$name.$mode
        : >"$out.probe"
        probe "$url/" "$out.probe" & probe_pid=$!
        sample_rss "$FRONT_PID" "$out.rss" & rss_pid=$!
        args=$(attack_args "$mode" "$url")
        # shellcheck disable=SC2086 # $args is a list of options
        timeout -k 5 $((DURATION + 30)) slowhttptest $args -c "$CONNECTIONS" -r "$RATE" -l "$DURATION" \
            -p 3 -g -o "$out.slow" >"$out.slow.out" 2>&1 || true
        touch "$BENCH_TMP/stop"
        wait "$probe_pid" "$rss_pid" 2>/dev/null || true
        total=$(wc -l <"$out.probe")
        ok=$(awk '$1 == 200' "$out.probe" | wc -l)
        # slowhttptest's CSV: seconds,closed,pending,connected,service available.
        held=$(awk -F, 'NR > 1 && $4 > m {m = $4} END {print m + 0}' "$out.slow.csv" 2>/dev/null || echo "?")
        held_end=$(awk -F, 'NR > 1 {c = $4} END {print c + 0}' "$out.slow.csv" 2>/dev/null || echo "?")
        lines+=("$(printf '%-13s %-10s %6s %6s %10s %6s %7s %8s' "$name" "$(mode_name "$mode")" \
            "$held" "$held_end" "$ok/$total" "$(percentile 50 "$out.probe")" \
            "$(percentile 99 "$out.probe")" "$(mib_of "$(cat "$out.rss")")")")
        note "${lines[-1]}"
        # Let the attack's sockets drain before the next mode (bounded).
        wait_until 30 test "$(ss -Htn state established "( dport = :$port )" | wc -l)" -le 0 || true
    done
    stop "$FRONT_PID"
done

echo "# $(date -u +%FT%TZ), $(nproc) CPUs, load after: $(uptime | sed 's/.*load average: //')"
for name in $PROXIES; do echo "# $(front_version "$name")"; done
echo "# $CONNECTIONS attack connections at $RATE/s for ${DURATION}s; probe every 100 ms, 3 s limit; latency over all attempts"
printf '%-13s %-10s %6s %6s %10s %6s %7s %8s\n' proxy attack held@max held@end probe-ok p50ms p99ms peakRSS
printf '%s\n' "${lines[@]}"
