#!/usr/bin/env bash
# Upstream restart under load: how many requests fail while a uvicorn app is
# restarted (SIGTERM, exit, start again on the same port, as `systemctl
# restart` does) with 50 requests/s going through the proxy.
#
#   bench/upstream-restart.sh              # bellhop, caddy, nginx
#   PROXIES="bellhop" bench/upstream-restart.sh
#   BELLHOP=target/debug/bellhop ...       # default target/release/bellhop
#   UPSTREAM_WAIT=30s ...                  # bellhop's upstream-wait (default: its own, 5s)
#
# Each proxy runs with its defaults for this case: bellhop's upstream-wait
# (5 s), Caddy's reverse_proxy (lb_try_duration 0: no retries), nginx's
# proxy_pass (proxy_next_upstream error timeout, nothing to retry with one
# server). Needs the test virtualenv (.venv, see scripts/test) for uvicorn.
# Prints one line per proxy: requests sent, 200s, 502s, other failures, and how
# long nobody listened on the app's port.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

PROXIES=${PROXIES:-bellhop caddy nginx}
BELLHOP=${BELLHOP:-target/release/bellhop}
DURATION=${DURATION:-20}
RESTART_AT=${RESTART_AT:-3}
[[ -x .venv/bin/uvicorn ]] || die ".venv/bin/uvicorn missing: run scripts/test once (it creates .venv)"
[[ " $PROXIES " != *" bellhop "* || -x $BELLHOP ]] || die "$BELLHOP missing: cargo build --release"

APP_PORT=$(free_port)

start_app() {
    spawn "$BENCH_TMP/uvicorn.log" .venv/bin/uvicorn --app-dir tests/apps ws_app:app \
        --host 127.0.0.1 --port "$APP_PORT" --log-level warning
    APP_PID=$SPAWNED
    WAIT_PID=$APP_PID wait_until 60 curl -sf "http://127.0.0.1:$APP_PORT/client" \
        || die "uvicorn did not start"
}

start_front() {
    local name=$1 port=$2 dir=$BENCH_TMP/$1
    mkdir -p "$dir"
    case $name in
        bellhop)
            local wait=""
            [[ -z ${UPSTREAM_WAIT:-} ]] || wait=" { upstream-wait \"$UPSTREAM_WAIT\" }"
            printf '"http://127.0.0.1:%s" { proxy "127.0.0.1:%s"%s }\n' "$port" "$APP_PORT" "$wait" >"$dir/Proxyfile"
            spawn "$dir/log" "$BELLHOP" run --config "$dir/Proxyfile" --log-level warn ;;
        caddy)
            printf '{\n\tadmin off\n\tauto_https off\n}\nhttp://127.0.0.1:%s {\n\treverse_proxy 127.0.0.1:%s\n}\n' \
                "$port" "$APP_PORT" >"$dir/Caddyfile"
            spawn "$dir/log" env HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir" \
                caddy run --config "$dir/Caddyfile" --adapter caddyfile ;;
        nginx)
            cat >"$dir/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
    uwsgi_temp_path $dir; scgi_temp_path $dir;
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://127.0.0.1:$APP_PORT; }
    }
}
NGINX
            spawn "$dir/log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ;;
    esac
    FRONT_PID=$SPAWNED
    WAIT_PID=$FRONT_PID wait_until 30 curl -sf "http://127.0.0.1:$port/client" \
        || die "$name did not start (see $dir/log)"
}

# load PORT SECONDS OUT — 50 GETs a second, each on its own connection, for
# SECONDS; writes one status per line to OUT (000 = no answer).
load() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys, threading, time, http.client
port, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
results, lock = [], threading.Lock()
def one(i):
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", f"/client?n={i}")
        s = c.getresponse().status
    except Exception:
        s = 0
    with lock:
        results.append((s, time.monotonic() - t0))
threads, start, i = [], time.monotonic(), 0
while time.monotonic() - start < seconds:
    t = threading.Thread(target=one, args=(i,)); t.start(); threads.append(t)
    i += 1
    time.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
for t in threads: t.join()
with open(out, "w") as f:
    f.write("".join(f"{s:03d} {d:.4f}\n" for s, d in results))
PY
}

# percentile P FILE — nearest-rank P-th percentile of column 2 (seconds), in ms.
percentile() {
    awk '{print $2}' "$2" | sort -n |
        awk -v p="$1" '{a[NR] = $1} END { if (!NR) { print "-"; exit }
            r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; printf "%.0f", a[r] * 1000 }'
}

note "load: $(uptime | sed 's/.*load average: //'); $(caddy version | awk '{print "Caddy", $1}'); $(nginx -v 2>&1 | sed 's/.*: //')"
printf '%-8s %8s %6s %6s %6s %10s %6s %6s %6s\n' proxy requests 200 502 other app_down_ms p50ms p99ms maxms
for name in $PROXIES; do
    start_app
    port=$(free_port)
    start_front "$name" "$port"
    out=$BENCH_TMP/$name.statuses
    load "$port" "$DURATION" "$out" &
    load_pid=$!
    sleep "$RESTART_AT"
    stop "$APP_PID"
    down=$(date +%s%N)
    start_app
    down_ms=$(( ($(date +%s%N) - down) / 1000000 ))
    wait "$load_pid"
    total=$(wc -l <"$out"); ok=$(grep -c '^200 ' "$out" || true); bad=$(grep -c '^502 ' "$out" || true)
    printf '%-8s %8d %6d %6d %6d %10d %6s %6s %6s\n' "$name" "$total" "$ok" "$bad" $((total - ok - bad)) "$down_ms" \
        "$(percentile 50 "$out")" "$(percentile 99 "$out")" "$(percentile 100 "$out")"
    stop "$FRONT_PID"
    stop "$APP_PID"
done
