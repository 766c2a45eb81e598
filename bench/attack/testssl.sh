#!/usr/bin/env bash
# TLS audit of bellhop's HTTPS listener with testssl.sh (Debian package), plus a
# few openssl s_client checks testssl 3.0 doesn't make (TLS 1.3 resumption,
# 0-RTT, what a client without SNI gets). The summary is in docs/security.md.
#
# Local only: bellhop listens on free high ports, testssl is pointed at
# 127.0.0.1 (--ip), makes no DNS lookups (-n none) and no OCSP/CRL fetches (no
# --phone-out). Not part of the test suite: about 2 minutes.
#
#   bench/attack/testssl.sh                      # debug build
#   PROFILE=release bench/attack/testssl.sh
#   OUT=/tmp/audit bench/attack/testssl.sh       # where the reports go (default target/testssl)
#
# Pass 1 audits the config an operator writes for a local HTTPS site:
#     localhost { tls internal; respond "ok" }
# Pass 2 adds the site's IP address and `hsts`, so the checks that testssl makes
# without SNI (secure renegotiation, Ticketbleed) reach a certificate too, and
# shows the HSTS header.
set -euo pipefail
cd "$(dirname "$0")/../.."

PROFILE=${PROFILE:-debug}
OUT=${OUT:-target/testssl}

if ! command -v testssl >/dev/null; then
    echo "installing testssl.sh (Debian package)" >&2
    sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq testssl.sh
fi

echo "building the $PROFILE binary..." >&2
build=(); [[ $PROFILE == release ]] && build=(--release)
cargo build "${build[@]}" --quiet --bin bellhop
bin=$PWD/target/$PROFILE/bellhop
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

tmp=$(mktemp -d)
bellhop_pid=""
cleanup() {
    [[ -n $bellhop_pid ]] && kill "$bellhop_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
https_port=$(free_port)
root=$tmp/state/internal/root.pem

start_bellhop() { # site-address-line site-body
    [[ -n $bellhop_pid ]] && { kill "$bellhop_pid"; wait "$bellhop_pid" 2>/dev/null || true; }
    cat >"$tmp/Proxyfile" <<PROXYFILE
options {
    http-port $http_port
    https-port $https_port
    state-dir "$tmp/state"
}
$1 {
$2
}
PROXYFILE
    "$bin" run --config "$tmp/Proxyfile" --log-level warn 2>>"$tmp/bellhop.err" &
    bellhop_pid=$!
    for _ in $(seq 200); do
        [[ -f $root ]] && curl -fsS -o /dev/null --cacert "$root" \
            --resolve "localhost:$https_port:127.0.0.1" "https://localhost:$https_port/" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bellhop did not come up:" >&2; cat "$tmp/bellhop.err" >&2; exit 1
}

run_testssl() { # name, extra args...
    local name=$1; shift
    rm -f "$OUT/$name.json"
    testssl --quiet --warnings off --color 0 -n none --ip 127.0.0.1 --add-ca "$root" \
        --jsonfile "$OUT/$name.json" "$@" "localhost:$https_port" >"$OUT/$name.log" 2>&1 || true
}

s_client() { # extra args...; sends one request and reads until the server closes
    printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 10 openssl s_client -ign_eof -connect "127.0.0.1:$https_port" "$@" 2>&1 || true
}

echo "== pass 1: localhost { tls internal; respond \"ok\" } on 127.0.0.1:$https_port" >&2
start_bellhop localhost '    tls internal
    respond "ok"'
run_testssl testssl

{
    echo "== openssl s_client checks"
    for v in tls1 tls1_1; do
        printf '%-34s %s\n' "-$v (TLS 1.0/1.1):" "$(s_client -servername localhost "-$v" | grep -oE 'alert [a-z ]+|Cipher is [A-Z0-9_-]+' | head -1)"
    done
    for v in tls1_2 tls1_3; do
        rm -f "$tmp/session"
        s_client -servername localhost "-$v" -sess_out "$tmp/session" >/dev/null
        printf '%-34s %s\n' "-$v resumption:" "$(s_client -servername localhost "-$v" -sess_in "$tmp/session" | grep -E '^(New|Reused),' | head -1)"
    done
    printf '%-34s %s\n' "TLS 1.3 ticket lifetime, 0-RTT:" "$(openssl sess_id -in "$tmp/session" -noout -text | grep -E 'lifetime hint|Max Early Data' | tr -s ' ' | tr '\n' ';')"
    printf '%-34s %s\n' "no SNI, localhost-only site:" "$(s_client -tls1_2 | grep -oE 'alert [a-z ]+' | head -1)"
    printf '%-34s %s\n' "ALPN h2,http/1.1 offered:" "$(timeout 10 openssl s_client -connect "127.0.0.1:$https_port" -servername localhost -alpn h2,http/1.1 </dev/null 2>&1 | grep -E '^ALPN protocol' | head -1)"
} >"$OUT/s_client.log"

echo "== pass 2: localhost \"127.0.0.1\" { tls internal; hsts; respond \"ok\" }: no-SNI checks, HSTS" >&2
start_bellhop 'localhost "127.0.0.1"' '    tls internal
    hsts
    respond "ok"'
run_testssl testssl-ip -R -T -h
{
    printf '%-34s %s\n' "no SNI, site with its IP:" "$(s_client -tls1_2 | grep -oE 'Cipher is [A-Z0-9_-]+|alert [a-z ]+' | head -1)"
    printf '%-34s %s\n' "HEAD over h2:" "$(curl -sSI --cacert "$root" --resolve "localhost:$https_port:127.0.0.1" "https://localhost:$https_port/" 2>&1 | head -1 | tr -d '\r')"
    printf '%-34s %s\n' "with hsts:" "$(curl -sSI --cacert "$root" --resolve "localhost:$https_port:127.0.0.1" "https://localhost:$https_port/" | grep -i '^strict-transport-security' | tr -d '\r')"
} >>"$OUT/s_client.log"

echo
echo "== testssl.sh $(testssl --version 2>/dev/null | grep -oE 'testssl +[0-9.]+' | head -1 | awk '{print $2}'), $(openssl version | cut -d' ' -f1-2); reports in $OUT"
grep -E '^ (SSLv|TLS 1|ALPN|NPN|NULL|Anonymous|Export|LOW|Triple|Obsolete|Strong|PFS|Elliptic|Has server cipher order|Negotiated protocol|Session Resumption|Session Ticket|SSL Session ID|OCSP stapling|Strict Transport|Server banner|Heartbleed|CCS|Ticketbleed|ROBOT|Secure|CRIME|BREACH|POODLE|TLS_FALLBACK|SWEET32|FREAK|DROWN|LOGJAM|BEAST|LUCKY13|RC4)' \
    "$OUT/testssl.log" || true
echo
echo "== without SNI, and with hsts (pass 2)"
grep -E '^ (Ticketbleed|Secure|Strict Transport)' "$OUT/testssl-ip.log" || true
echo
echo "== ciphers offered"
sed -n '/^Hexcode/,/^$/p' "$OUT/testssl.log"
cat "$OUT/s_client.log"
kill -0 "$bellhop_pid" 2>/dev/null && echo "bellhop still running" || { echo "bellhop DIED"; exit 1; }
