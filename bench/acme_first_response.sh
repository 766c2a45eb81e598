#!/usr/bin/env bash
# Seconds from starting the proxy to the first verified HTTPS 200 against a
# fresh Pebble, for bellhop and (if installed) Caddy, measured the same way.
#
#   bench/acme_first_response.sh [path/to/bellhop] [runs]
#
# Needs: pebble + pebble-challtestsrv (Debian package `pebble`), openssl, curl,
# python3 (for the clock and free ports); optional: caddy (Debian package).
# Everything runs on 127.0.0.1 in a temp dir; all processes are stopped at exit.
set -euo pipefail

BELLHOP=${1:-target/debug/bellhop}
RUNS=${2:-5}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { python3 -c 'import time; print(time.monotonic())'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Pebble's own HTTPS certificate: a throw-away root and a localhost leaf.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench Pebble root" -keyout "$WORK/root.key" -out "$WORK/root.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout "$WORK/api.key" -out "$WORK/api.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/api.csr" -CA "$WORK/root.pem" -CAkey "$WORK/root.key" \
    -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/api.pem" 2>/dev/null

start_pebble() { # http_port tls_port -> sets PEBBLE_DIR, PEBBLE_MGMT
    local http=$1 tls=$2 dns mgmt listen cmgmt
    dns=$(free_port); listen=$(free_port); mgmt=$(free_port); cmgmt=$(free_port)
    cat > "$WORK/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$listen", "managementListenAddress": "127.0.0.1:$mgmt",
 "certificate": "$WORK/api.pem", "privateKey": "$WORK/api.key",
 "httpPort": $http, "tlsPort": $tls, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
    pebble-challtestsrv -dns01 "127.0.0.1:$dns" -management "127.0.0.1:$cmgmt" -http01 "" -https01 "" \
        -tlsalpn01 "" -defaultIPv4 127.0.0.1 -defaultIPv6 "" > "$WORK/challtestsrv.log" 2>&1 &
    PIDS+=($!)
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        pebble -config "$WORK/pebble.json" -dnsserver "127.0.0.1:$dns" > "$WORK/pebble.log" 2>&1 &
    PIDS+=($!)
    PEBBLE_DIR="https://127.0.0.1:$listen/dir"
    PEBBLE_MGMT="https://127.0.0.1:$mgmt"
    until curl -sf --cacert "$WORK/root.pem" "$PEBBLE_DIR" >/dev/null; do sleep 0.05; done
    curl -sf --cacert "$WORK/root.pem" "$PEBBLE_MGMT/roots/0" > "$WORK/issuing.pem"
}

stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

measure() { # name command...  (the proxy serves app.test on $HTTPS)
    local t0 t1 pid name=$1
    shift
    t0=$(now)
    "$@" > "$WORK/proxy.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    local deadline=$(( $(date +%s) + 60 ))
    until curl -sf --cacert "$WORK/issuing.pem" --resolve "app.test:$HTTPS:127.0.0.1" \
        "https://app.test:$HTTPS/" -o /dev/null; do
        if [ "$(date +%s)" -gt "$deadline" ]; then echo "timed out; log:" >&2; cat "$WORK/proxy.log" >&2; exit 1; fi
        sleep 0.01
    done
    t1=$(now)
    cp "$WORK/proxy.log" "${TMPDIR:-/tmp}/acme_first_response.$name.log" 2>/dev/null || true
    python3 -c "print(f'{$t1 - $t0:.2f}')"
}

run_bellhop() {
    HTTP=$(free_port); HTTPS=$(free_port)
    start_pebble "$HTTP" "$HTTPS"
    rm -rf "$WORK/bellhop-state"
    cat > "$WORK/Proxyfile" <<KDL
options {
    acme-ca "$PEBBLE_DIR"
    acme-ca-root "$WORK/root.pem"
    state-dir "$WORK/bellhop-state"
    http-port $HTTP
    https-port $HTTPS
}
app.test { respond "hello" }
KDL
    measure bellhop "$BELLHOP" run --config "$WORK/Proxyfile"
    stop_all
}

run_caddy() {
    HTTP=$(free_port); HTTPS=$(free_port)
    start_pebble "$HTTP" "$HTTPS"
    rm -rf "$WORK/caddy-home"
    cat > "$WORK/Caddyfile" <<CADDY
{
    http_port $HTTP
    https_port $HTTPS
    acme_ca $PEBBLE_DIR
    acme_ca_root $WORK/root.pem
    admin off
    storage file_system $WORK/caddy-home
}
app.test {
    respond "hello"
}
CADDY
    HOME="$WORK/caddy-home" XDG_DATA_HOME="$WORK/caddy-home" XDG_CONFIG_HOME="$WORK/caddy-home" \
        measure caddy caddy run --config "$WORK/Caddyfile" --adapter caddyfile
    stop_all
}

echo "seconds from start to first verified HTTPS 200 (fresh Pebble and state each run)"
printf 'bellhop:'; for _ in $(seq "$RUNS"); do printf ' %s' "$(run_bellhop)"; done; echo
if command -v caddy >/dev/null; then
    printf 'caddy:  '; for _ in $(seq "$RUNS"); do printf ' %s' "$(run_caddy)"; done; echo
fi
