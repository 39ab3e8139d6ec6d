#!/usr/bin/env python3
"""memlog_live.py: what is alive at a run's peak, from the stderr of SPEEDRUN_MEMLOG=<MiB>.

    SPEEDRUN_MEMLOG=1 speedrun run script.lua 2> mem.log
    python3 bench/memlog_live.py mem.log [--device cpu|cuda] [--after TEXT] [--at TEXT] [--top N]

The log has a line per storage of at least that many MiB when it is made (its serial, the Lua line
that made it or the tape node whose backward did) and when it is freed. This replays them and prints
the storages alive at the device's highest "live" value, grouped by where they were made: MiB,
count and share of the live total. --after TEXT: the highest value after the first line containing
TEXT (a marker the script writes to stderr: the peak of a later step, not the warm-up's); --at TEXT:
the live set at the first line containing TEXT instead of the peak. Storages below the threshold,
or made before logging began, are not in the log: their bytes show on the last line.
"""
import argparse
import collections
import re
import sys

LINE = re.compile(r"memlog:\s+([\d.]+) MiB (\S+)\s+live\s+([\d.]+) MiB\s+#(\d+) (.*)$")


def first_line(lines, text):
    for i, line in enumerate(lines):
        if text in line:
            return i
    sys.exit(f"memlog_live.py: no line contains {text!r}")


def replay(lines, device, start, stop):
    """the live set {serial: (MiB, where)} at the highest live value on lines start..stop-1 (or at
    line stop when stop is given), that value and the line's index"""
    live, best, best_total, best_i, total = {}, {}, -1.0, -1, 0.0
    for i, line in enumerate(lines):
        if stop is not None and i == stop:
            return dict(live), total, i
        m = LINE.search(line)
        if not m or m.group(2) != device:
            continue
        mib, total, serial, where = float(m.group(1)), float(m.group(3)), int(m.group(4)), m.group(5).strip()
        if where == "freed":
            live.pop(serial, None)
        else:
            live[serial] = (mib, where)
        if i >= start and total > best_total:
            best, best_total, best_i = dict(live), total, i
    return best, best_total, best_i


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--after", help="the peak after the first line containing this text")
    ap.add_argument("--at", help="the live set at the first line containing this text")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    lines = open(a.log, errors="replace").read().splitlines()
    start = first_line(lines, a.after) if a.after else 0
    stop = first_line(lines, a.at) if a.at else None
    live, total, idx = replay(lines, a.device, start, stop)
    if idx < 0:
        sys.exit(f"memlog_live.py: no memlog lines for {a.device}")
    groups, count = collections.Counter(), collections.Counter()
    for mib, where in live.values():
        groups[where] += mib
        count[where] += 1
    logged = sum(groups.values())
    print(f"live on {a.device} at log line {idx + 1}: {total:.1f} MiB, {logged:.1f} MiB of it in {len(live)} logged storages")
    for where, mib in groups.most_common(a.top):
        print(f"{mib:10.1f} MiB {count[where]:5d}x {100 * mib / total if total else 0:5.1f}%  {where}")
    print(f"{total - logged:10.1f} MiB        (below the threshold, or made before logging began)")


if __name__ == "__main__":
    main()
