#!/usr/bin/env python3
"""sass_stalls.py: where a kernel's warps wait, from Nsight Compute's source page (bench/gpu_session.sh
flexprof with FLEXPROF_SASS=1 writes one CSV a kernel: `ncu -i REP --page source --csv --print-source
sass`). Prints the stall samples and executed instructions summed by opcode, the per-reason totals
when the CSV has them, and the instructions with the most samples (with their addresses, so a hot
spot can be found in `cuobjdump -sass`).

usage: python3 bench/sass_stalls.py KERNEL.csv [top=30] [--unit OPCODE=N] [--blocks K]
  --unit HMMA=320   counts per unit of work: executed instructions divided by (executed OPCODE / N),
                    e.g. per warp-tile of the flex backward (320 HMMA a warp-tile)
  --blocks K        the kernel in address order, K instructions a block: each block's stall share,
                    instructions executed (per unit) and how many of them are integer / MMA
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


INTEGER = {"IMAD", "ISETP", "LEA", "LOP3", "SHF", "SEL", "IADD3", "PLOP3", "VIADD", "ULDC", "UIMAD", "UIADD3", "MOV",
           "IABS", "IMNMX", "VIMNMX", "PRMT", "ULEA", "USHF", "ULOP3", "UISETP", "UMOV", "S2R", "CS2R", "R2P", "P2R"}


def options(argv):
    pos, unit, blocks = [], None, 0
    it = iter(argv)
    for a in it:
        if a == "--unit":
            op, n = next(it).split("=")
            unit = (op, float(n))
        elif a == "--blocks":
            blocks = int(next(it))
        else:
            pos.append(a)
    if not pos:
        sys.exit(__doc__)
    return pos[0], int(pos[1]) if len(pos) > 1 else 30, unit, blocks


def print_blocks(seq, k, per, total):
    """seq: (opcode, samples, executed) in address order"""
    print("\nby block of %d instructions (stall share, executed%s, integer, MMA):" % (k, " per unit" if per != 1 else ""))
    for b in range(0, len(seq), k):
        part = seq[b:b + k]
        s = sum(x[1] for x in part)
        e = sum(x[2] for x in part) / per
        if e < 0.5 and s < total * 0.002:
            continue
        ints = sum(x[2] for x in part if x[0] in INTEGER) / per
        mma = sum(x[2] for x in part if x[0] in ("HMMA", "HGMMA")) / per
        print("  %5d-%-5d %6.1f%% %10.1f %10.1f %8.1f" % (b, b + len(part) - 1, 100 * s / max(total, 1), e, ints, mma))


def main():
    path, top, unit, blocks = options(sys.argv[1:])
    header, rows = rows_of(path)
    src = column(header, "source")
    addr = column(header, "address")
    samp = column(header, "sampling", "all")
    if samp is None:
        samp = column(header, "samples")
    execd = column(header, "instructions executed")
    if src is None or samp is None:
        sys.exit("sass_stalls: no Source / stall-sampling column in %s (columns: %s)" % (sys.argv[1], header))
    reasons = [i for i, h in enumerate(header) if h.lower().startswith("stall") or "stall_" in h.lower()]
    by_op = defaultdict(lambda: [0.0, 0.0])
    by_reason = defaultdict(float)
    hot, seq = [], []
    total = 0.0
    for r in rows:
        if len(r) <= max(src, samp):
            continue
        s = number(r[samp]) or 0.0
        e = number(r[execd]) if execd is not None and execd < len(r) else None
        op = opcode(r[src])
        by_op[op][0] += s
        by_op[op][1] += e or 0.0
        seq.append((op, s, e or 0.0))
        total += s
        for i in reasons:
            if i < len(r):
                by_reason[header[i]] += number(r[i]) or 0.0
        hot.append((s, r[addr] if addr is not None else "", r[src].strip()))
    per = 1.0
    if unit:
        n = by_op.get(unit[0], [0, 0])[1]
        if n <= 0:
            sys.exit("sass_stalls: no %s executed in %s" % (unit[0], path))
        per = n / unit[1]
    executed = sum(e for _, e in by_op.values())
    print("%d instructions, %.0f stall samples, %.0f executed%s" % (len(rows), total, executed,
          ", %.1f a unit (%.0f units)" % (executed / per, per) if unit else ""))
    print("\nby opcode (samples, share, instructions executed%s):" % (" per unit" if unit else ""))
    for op, (s, e) in sorted(by_op.items(), key=lambda kv: -kv[1][0])[:25]:
        print("  %-12s %10.0f %6.1f%% %14.1f" % (op, s, 100 * s / max(total, 1), e / per))
    if blocks:
        print_blocks(seq, blocks, per, total)
    if by_reason:
        print("\nby reason:")
        for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1])[:20]:
            print("  %-50s %10.0f" % (k, v))
    print("\nhottest instructions:")
    for s, a, text in sorted(hot, key=lambda h: -h[0])[:top]:
        print("  %8.0f %6.1f%%  %s  %s" % (s, 100 * s / max(total, 1), a, text[:90]))


if __name__ == "__main__":
    main()
