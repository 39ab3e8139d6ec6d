#!/usr/bin/env python3
"""sass_stalls.py: where a kernel's warps wait, from Nsight Compute's source page (bench/gpu_session.sh
flexprof with FLEXPROF_SASS=1 writes one CSV a kernel: `ncu -i REP --page source --csv --print-source
sass`). Prints the stall samples and executed instructions summed by opcode, the per-reason totals
when the CSV has them, and the instructions with the most samples (with their addresses, so a hot
spot can be found in `cuobjdump -sass`).

usage: python3 bench/sass_stalls.py KERNEL.csv [top=30]
"""
import csv
import sys
from collections import defaultdict


def number(s):
    try:
        return float(str(s).replace(",", ""))
    except ValueError:
        return None


def column(header, *words):
    """the first column whose name contains every one of words (case-insensitive), or None"""
    for i, h in enumerate(header):
        if all(w.lower() in h.lower() for w in words):
            return i
    return None


def rows_of(path):
    with open(path, newline="") as f:
        lines = [l for l in f if l.strip()]
    # ncu may print a banner before the table: start at the header (the line naming Source)
    start = next((i for i, l in enumerate(lines) if '"Source"' in l or l.startswith("Address")), 0)
    r = list(csv.reader(lines[start:]))
    return r[0], r[1:]


def opcode(src):
    tok = src.strip().split()
    while tok and (tok[0].startswith("@") or tok[0].startswith("{")):
        tok = tok[1:]
    return tok[0].split(".")[0] if tok else "?"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    header, rows = rows_of(sys.argv[1])
    src = column(header, "source")
    addr = column(header, "address")
    samp = column(header, "sampling", "all") or column(header, "samples")
    execd = column(header, "instructions executed")
    if src is None or samp is None:
        sys.exit("sass_stalls: no Source / stall-sampling column in %s (columns: %s)" % (sys.argv[1], header))
    reasons = [i for i, h in enumerate(header) if h.lower().startswith("stall") or "stall_" in h.lower()]
    by_op = defaultdict(lambda: [0.0, 0.0])
    by_reason = defaultdict(float)
    hot = []
    total = 0.0
    for r in rows:
        if len(r) <= max(src, samp):
            continue
        s = number(r[samp]) or 0.0
        e = number(r[execd]) if execd is not None and execd < len(r) else None
        op = opcode(r[src])
        by_op[op][0] += s
        by_op[op][1] += e or 0.0
        total += s
        for i in reasons:
            if i < len(r):
                by_reason[header[i]] += number(r[i]) or 0.0
        hot.append((s, r[addr] if addr is not None else "", r[src].strip()))
    print("%d instructions, %.0f stall samples" % (len(rows), total))
    print("\nby opcode (samples, share, instructions executed):")
    for op, (s, e) in sorted(by_op.items(), key=lambda kv: -kv[1][0])[:25]:
        print("  %-12s %10.0f %6.1f%% %14.0f" % (op, s, 100 * s / max(total, 1), e))
    if by_reason:
        print("\nby reason:")
        for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1])[:20]:
            print("  %-50s %10.0f" % (k, v))
    print("\nhottest instructions:")
    for s, a, text in sorted(hot, key=lambda h: -h[0])[:top]:
        print("  %8.0f %6.1f%%  %s  %s" % (s, 100 * s / max(total, 1), a, text[:90]))


if __name__ == "__main__":
    main()
