#!/usr/bin/env python3
"""Which crates a running bellhop's resident code pages belong to.

    bench/rss_pages.py PID [UNSTRIPPED] [--touched FILE]

Reads the present bits of the executable's mappings from /proc/PID/pagemap
(root), maps each resident page of the code segment to the functions on it
with the symbol table of UNSTRIPPED (a non-stripped link of the very same
build: same layout; default /proc/PID/exe), and prints, per crate, the code
resident (each page's 4 KiB shared among the functions on it by their bytes),
the crate's code in the binary, and with --touched (a symbol list such as
scripts/symbol-order.txt, mangled names) the bytes of the functions in it: the
floor if those functions were packed together. Why: the kernel maps a binary's
file pages in whole page-cache folios plus 64 KiB of fault-around, so a page
is resident when anything near it ran; this shows how much of the code RSS is
neighbours of what ran.
"""

import bisect
import os
import re
import struct
import subprocess
import sys
from collections import defaultdict

PAGE = 4096


def crate_of(name):
    """The crate a demangled symbol belongs to (first path segment), or a
    family name for C and assembly symbols."""
    s = name.lstrip("<&*")
    for prefix in ("dyn ", "mut ", "const "):
        if s.startswith(prefix):
            s = s[len(prefix):]
    if "::" in s:
        return re.split(r"::|<| ", s, maxsplit=1)[0] or "?"
    if s.startswith("ring_core"):
        return "ring (C/asm)"
    if re.match(r"(ZSTD|HUF|FSE|HIST|ZDICT|POOL)_", s):
        return "zstd (C)"
    return "(C, std glue)"


def symbols(binary):
    """Sorted (start, end, mangled name, demangled name) of the sized function
    symbols (STT_FUNC: not the data tables some assembly keeps in .text) of
    BINARY."""
    out = subprocess.run(["readelf", "-sW", binary],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[3] == "FUNC" and parts[6] != "UND" and int(parts[2], 0):
            start = int(parts[1], 16)
            syms.append((start, start + int(parts[2], 0), parts[7]))
    names = subprocess.run(["c++filt"], input="\n".join(s[2] for s in syms) + "\n",
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return sorted(set((s, e, raw, name) for (s, e, raw), name in zip(syms, names)))


def resident_code_pages(pid):
    """(load base, [runtime page addresses]) of the present pages of the
    executable's r-x mapping."""
    exe = os.readlink(f"/proc/{pid}/exe")
    base, pages = None, []
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap, open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            f = line.split()
            if len(f) < 6 or f[5] != exe:
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if base is None:
                base = lo - int(f[2], 16)
            if "x" not in f[1]:
                continue
            pagemap.seek(lo // PAGE * 8)
            data = pagemap.read((hi - lo) // PAGE * 8)
            for i in range((hi - lo) // PAGE):
                if struct.unpack_from("<Q", data, i * 8)[0] >> 63:
                    pages.append(lo + i * PAGE)
    return base, pages


def main():
    args = sys.argv[1:]
    touched_file = None
    if "--touched" in args:
        i = args.index("--touched")
        touched_file = args[i + 1]
        del args[i:i + 2]
    pid = args[0]
    binary = args[1] if len(args) > 1 else f"/proc/{pid}/exe"
    syms = symbols(binary)
    starts = [s[0] for s in syms]
    base, pages = resident_code_pages(pid)

    resident = defaultdict(float)
    for page in pages:
        lo, hi = page - base, page - base + PAGE
        i = max(bisect.bisect_right(starts, lo) - 1, 0)
        covered = 0
        while i < len(syms) and syms[i][0] < hi:
            s, e, _, name = syms[i]
            overlap = min(e, hi) - max(s, lo)
            if overlap > 0:
                resident[crate_of(name)] += overlap
                covered += overlap
            i += 1
        resident["(padding)"] += max(PAGE - covered, 0)

    total = defaultdict(int)
    for s, e, _, name in syms:
        total[crate_of(name)] += e - s

    touched = defaultdict(int)
    if touched_file:
        wanted = {line.strip() for line in open(touched_file) if line.strip()}
        for s, e, raw, name in syms:
            if raw in wanted:
                touched[crate_of(name)] += e - s

    crates = sorted(set(resident) | set(touched), key=lambda c: -resident[c])
    print(f"{len(pages) * 4} KiB of code resident in {len(pages)} pages")
    print("| crate | resident KiB | in binary KiB | functions run KiB |")
    print("|---|---:|---:|---:|")
    for c in crates:
        print(f"| {c} | {resident[c] / 1024:.0f} | {total[c] / 1024:.0f} | {touched[c] / 1024:.0f} |")
    if touched_file:
        print(f"functions run: {sum(touched.values()) / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
