#!/usr/bin/env python3
"""Abusive clients for bench/memory.sh: they open connections, hold them, and
close them all when this process ends (SIGTERM from the script).

    memory_clients.py idle N HOST:PORT [PATH [NET]]
        N TCP connections that never send a byte (no TLS ClientHello): what a
        proxy holds for a connection before its handshake.
    memory_clients.py slowread N HOST:PORT PATH [NET]
        N TLS connections (http/1.1), each sending one GET for PATH (a large
        response) and then reading nothing, with a 4 KiB receive buffer so the
        kernel takes little of the response off the proxy's hands.

Prints "ready N" once all N are open (and, for slowread, their requests sent),
then waits to be terminated. Connections come from 127.NET.x.y (NET 77 by
default), 4,096 per source address. Only the Python standard library is used.
"""

import signal
import socket
import ssl
import sys
import time


def source(i):
    """A loopback source address for connection i: 4,096 per address, so
    tens of thousands of connections to one port never run out of ephemeral
    ports (or crawl through the ones in TIME_WAIT from an earlier run)."""
    return f"127.{SOURCE_NET}.{i // 4096 // 250}.{i // 4096 % 250 + 1}"


SOURCE_NET = 77


def connect(addr, i, rcvbuf=None):
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source(i), 0))
    if rcvbuf:
        # Set before connect so the advertised window stays small.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((host, int(port)))
    return s


def idle(n, addr):
    held = []
    for i in range(n):
        held.append(connect(addr, i))
    return held


def slowread(n, addr, path):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    host = addr.rsplit(":", 1)[0]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    held = []
    for i in range(n):
        tls = ctx.wrap_socket(connect(addr, i, rcvbuf=4096), server_hostname=host)
        tls.sendall(request)
        held.append(tls)
    return held


def main():
    global SOURCE_NET
    mode, n, addr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # Each client process of a run gets its own /16 of source addresses.
    SOURCE_NET = int(sys.argv[5]) if len(sys.argv) > 5 else SOURCE_NET
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    start = time.monotonic()
    if mode == "idle":
        held = idle(n, addr)
    elif mode == "slowread":
        held = slowread(n, addr, sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
    print(f"ready {len(held)} in {time.monotonic() - start:.1f} s", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
