#!/usr/bin/env python3
"""Where a process's resident memory is, from /proc/PID/smaps (bench/idle-rss.sh).

    bench/smaps_split.py PID            # one line of key=KiB pairs
    bench/smaps_split.py --header       # the column names, in the same order

Parts (KiB): rss (the sum, as VmRSS), anon (Anonymous: heap, stacks, and the
binary's relocated pages once the loader wrote them), and the resident pages of
the executable split by what its mappings hold: `code` (r-x), `ro` (the
read-only segment at file offset 0: relocation tables, .rodata, unwind tables),
`relro` (.data.rel.ro and the GOT, written by the dynamic loader, then made
read-only; counted in anon too), `data` (.data/.bss); `libs` is every other
file-backed mapping (libc, libm, ld.so, libgcc_s), `other` the anonymous
mappings' resident pages (heap, stacks). The executable is /proc/PID/exe.
"""

import os
import sys

PARTS = ["rss", "anon", "code", "ro", "relro", "data", "libs", "other"]


def mappings(pid):
    """(perms, offset, path, fields) for each mapping of smaps."""
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                if current:
                    yield current
                path = head[5] if len(head) > 5 else ""
                current = (head[1], int(head[2], 16), path, {})
            elif current and len(head) >= 2 and head[0].endswith(":"):
                try:
                    current[3][head[0][:-1]] = int(head[1])
                except ValueError:
                    pass
    if current:
        yield current


def split(pid):
    exe = os.readlink(f"/proc/{pid}/exe")
    out = dict.fromkeys(PARTS, 0)
    seen_code = False
    for perms, offset, path, fields in mappings(pid):
        rss = fields.get("Rss", 0)
        out["rss"] += rss
        out["anon"] += fields.get("Anonymous", 0)
        if path == exe:
            if "x" in perms:
                out["code"] += rss
                seen_code = True
            elif not seen_code or offset == 0:
                out["ro"] += rss
            elif "w" in perms:
                out["data"] += rss
            else:
                out["relro"] += rss
        elif path.startswith("/"):
            out["libs"] += rss
        else:
            out["other"] += rss
    return out


def main():
    if sys.argv[1:] == ["--header"]:
        print(" ".join(PARTS))
        return
    parts = split(sys.argv[1])
    print(" ".join(f"{k}={parts[k]}" for k in PARTS))


if __name__ == "__main__":
    main()
