# The proxies bench/run.sh compares, each configured the same way; sourced by it.
#
#   start_proxy NAME   # baseline | bellhop | nginx | haproxy | caddy | relay
#   ... PROXY_PIDS (comma-separated; empty for baseline), HTTP_ADDR, HTTPS_ADDR ...
#   stop_proxy
#
# Same for all: 127.0.0.1 high ports, plain HTTP and HTTPS (h2 + http/1.1, TLS 1.2
# and 1.3, $BENCH_TMP/cert.pem), upstream keep-alive to $BACKEND, WebSocket upgrades
# with a 1 h idle timeout, X-Forwarded-For/-Proto set, no per-request logging, one
# worker, pinned to CPU $PROXY_CPU. Each gets its own directory under $BENCH_TMP.

PROXY_MAIN=
PROXY_PIDS=
# Overrides for other scripts (bench/memory.sh): the bellhop binary, extra lines
# for its options block, environment for it (an allocator), nginx's slot count.
BELLHOP_BIN=${BELLHOP_BIN:-target/release/bellhop}

# The proxy's processes (a master's workers are its children), for CPU and RSS.
proxy_ticks() { if [[ -n $PROXY_PIDS ]]; then cpu_ticks "$PROXY_PIDS" "$@"; else echo 0; fi; }

proxy_versions() {
    local v=()
    [[ " $PROXIES " == *" bellhop "* ]] && v+=("bellhop $(git describe --always --dirty) ${BELLHOP_NOTE:-}")
    [[ " $PROXIES " == *" nginx "* ]] && v+=("$(nginx -v 2>&1 | sed 's/.*: //')")
    [[ " $PROXIES " == *" haproxy "* || " $PROXIES " == *" relay "* ]] &&
        v+=("HAProxy $(haproxy -v | awk 'NR == 1 {print $3}')")
    [[ " $PROXIES " == *" caddy "* ]] && v+=("Caddy $(caddy version | awk '{print $1}')")
    printf "%s; " "${v[@]}" | sed "s/; $//"
}

# The environment bellhop's systemd unit gives it (its `Environment=` lines,
# NAME=value words), so bellhop is measured as it is deployed.
BELLHOP_UNIT_ENV=$(sed -n 's/^Environment=//p' "$(dirname "${BASH_SOURCE[0]}")/../deploy/bellhop.service" | xargs)

start_proxy() {
    local name=$1 dir=$BENCH_TMP/$1 http https
    mkdir -p "$dir"
    http=$(free_port); https=$(free_port)
    HTTP_ADDR=127.0.0.1:$http; HTTPS_ADDR=127.0.0.1:$https
    case $name in
        baseline) HTTP_ADDR=$BACKEND; HTTPS_ADDR=; PROXY_MAIN=; PROXY_PIDS=; return 0 ;;
        bellhop) config_bellhop "$dir" "$http" "$https" ;;
        nginx) config_nginx "$dir" "$http" "$https" ;;
        haproxy) config_haproxy "$dir" "$http" "$https" ;;
        caddy) config_caddy "$dir" "$http" "$https" ;;
        relay) config_relay "$dir" "$http" "$https" ;;
    esac
    spawn "$dir/stderr.log" env "${PROXY_ENV[@]}" taskset -c "$PROXY_CPU" "${PROXY_CMD[@]}"
    PROXY_MAIN=$SPAWNED
    WAIT_PID=$PROXY_MAIN wait_until 30 curl -fsS -o /dev/null "http://$HTTP_ADDR/" &&
        wait_until 30 curl -fsS -o /dev/null --cacert "$BENCH_TMP/ca.pem" "https://$HTTPS_ADDR/" ||
        { cat "$dir/stderr.log" >&2; die "$name did not answer on $HTTP_ADDR and $HTTPS_ADDR"; }
    PROXY_PIDS=$(tree_pids "$PROXY_MAIN")
}

# need_proxies NAME... — each peer named is installed (or the script exits 3
# saying what is missing); bellhop and bench-backend are built when missing.
need_proxies() {
    local name
    for name in "$@"; do
        case $name in
            bellhop) ;;
            relay) require_commands haproxy:haproxy ;;
            *) require_commands "$name:$name" ;;
        esac
    done
    if [[ ! -x $BELLHOP_BIN || ! -x target/release/examples/bench-backend ]]; then
        note "building release binaries (bellhop, bench-backend)"
        cargo build --release --quiet --bin bellhop --example bench-backend
    fi
}

# settle_idle — after start_proxy: lets the proxy idle IDLE_SETTLE seconds (8),
# then sends one more plain and one TLS request, so that an "idle" figure is
# that of a proxy which has been idle a while and still serves, not a snapshot
# of its start-up. Every proxy gets the same. (bellhop gives start-up's memory
# back once, 5 s after it starts: src/server/trim.rs; the peers have no such
# step, and their figures do not move with the wait.)
settle_idle() {
    [[ -n $PROXY_PIDS ]] || return 0
    sleep "${IDLE_SETTLE:-8}"
    serve_once
}

# serve_once — one plain request, and one TLS request if the proxy has HTTPS.
serve_once() {
    curl -fsS -o /dev/null "http://$HTTP_ADDR/"
    [[ -z $HTTPS_ADDR ]] || curl -fsS -o /dev/null --cacert "$BENCH_TMP/ca.pem" "https://$HTTPS_ADDR/"
}

stop_proxy() {
    [[ -n $PROXY_MAIN ]] && stop "$PROXY_MAIN"
    PROXY_MAIN=; PROXY_PIDS=
}

config_bellhop() {
    local dir=$1 workers=
    cat >"$dir/Proxyfile" <<KDL
options {
    state-dir "$dir/state"
    http-port $(free_port)
    https-port $(free_port)
    @WORKERS@
    ${BELLHOP_OPTIONS:-}
}
"http://127.0.0.1:$2" { proxy "$BACKEND" }
"https://127.0.0.1:$3" {
    tls "$BENCH_TMP/cert.pem" "$BENCH_TMP/key.pem"
    proxy "$BACKEND"
}
KDL
    # One worker when this bellhop has the option; else its default runtime.
    sed 's/@WORKERS@/workers 1/' "$dir/Proxyfile" >"$dir/Proxyfile.workers"
    if "$BELLHOP_BIN" validate --config "$dir/Proxyfile.workers" >/dev/null 2>&1; then
        mv "$dir/Proxyfile.workers" "$dir/Proxyfile"
        BELLHOP_NOTE="(workers 1)"
    else
        sed -i '/@WORKERS@/d' "$dir/Proxyfile"
        BELLHOP_NOTE="(no workers option: default runtime, pinned to one CPU)"
    fi
    PROXY_CMD=("$BELLHOP_BIN" run --config "$dir/Proxyfile" --log-level error)
    # The unit's environment, then BELLHOP_ENV (a variant's, which wins).
    # Given to whatever starts PROXY_CMD (`env` before it), so that under
    # callgrind (callgrind-check.sh) the measured process is bellhop itself.
    # shellcheck disable=SC2206 # NAME=value words
    PROXY_ENV=($BELLHOP_UNIT_ENV ${BELLHOP_ENV:-})
}

config_nginx() {
    PROXY_ENV=()
    local dir=$1
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $dir/nginx.pid;
error_log stderr warn;
# Above the open-file limit, so that limit (the same for every proxy) is the cap.
events { worker_connections ${NGINX_CONNECTIONS:-$((2 * $(ulimit -n)))}; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    # nginx closes a client connection (HTTP/1.1 and h2 alike, since 1.19.7) and an
    # upstream one after 1,000 requests by default; h2load does not reconnect, so an
    # h2 run ended after 50,000 requests and its latency was not a like figure.
    # The other proxies set no such limit.
    keepalive_requests 100000000;
    upstream backend { server $BACKEND; keepalive 64; keepalive_requests 100000000; }
    # Connection: upgrade only on upgrade requests, so the others keep the upstream alive.
    map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
    server {
        listen 127.0.0.1:$2;
        listen 127.0.0.1:$3 ssl http2;
        ssl_certificate $BENCH_TMP/cert.pem;
        ssl_certificate_key $BENCH_TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
NGINX
    PROXY_CMD=(nginx -p "$dir" -c "$dir/nginx.conf" -e stderr)
}

config_haproxy() {
    PROXY_ENV=()
    local dir=$1
    # maxconn unset: HAProxy derives it from the open-file limit.
    cat >"$dir/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    http-reuse always
    option forwardfor
frontend web
    bind 127.0.0.1:$2
    bind 127.0.0.1:$3 ssl crt $BENCH_TMP/combined.pem alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    default_backend app
backend app
    server app $BACKEND
HAPROXY
    PROXY_CMD=(haproxy -db -f "$dir/haproxy.cfg")
}

# Not a reverse proxy: HAProxy in `mode tcp`, relaying bytes between each
# client connection and an upstream connection of its own, parsing nothing.
# It makes the same two reads and two sends per keep-alive request as an HTTP
# proxy, with next to no work in user space, so its CPU per request is the
# floor the kernel sets (bench/floor.sh). HTTPS is terminated and relayed too,
# so that start_proxy's check answers.
config_relay() {
    PROXY_ENV=()
    local dir=$1
    cat >"$dir/haproxy.cfg" <<HAPROXY
global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend relay
    bind 127.0.0.1:$2
    bind 127.0.0.1:$3 ssl crt $BENCH_TMP/combined.pem
    default_backend app
backend app
    server app $BACKEND
HAPROXY
    PROXY_CMD=(haproxy -db -f "$dir/haproxy.cfg")
}

config_caddy() {
    PROXY_ENV=()
    local dir=$1
    cat >"$dir/Caddyfile" <<CADDY
{
    admin off
    auto_https disable_redirects
    http_port $(free_port)
    https_port $(free_port)
    storage file_system $dir/data
    log {
        level ERROR
    }
    servers {
        protocols h1 h2
    }
}
http://127.0.0.1:$2 {
    reverse_proxy $BACKEND
}
https://127.0.0.1:$3 {
    tls $BENCH_TMP/cert.pem $BENCH_TMP/key.pem
    reverse_proxy $BACKEND
}
CADDY
    PROXY_CMD=(env GOMAXPROCS=1 HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config"
        caddy run --config "$dir/Caddyfile" --adapter caddyfile)
}
