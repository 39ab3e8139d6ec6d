#!/usr/bin/env python3
"""compare.py TORCH.json OURS.json [--tol 0.03] [--names A,B]: the per-step training losses of the PyTorch
record script and of the speedrun recipe from the same initial weights and token windows.
Prints a table (every 5th step and the worst one), the largest absolute difference, the verdict
against the tolerance (default 0.03 nats: bf16 autocast noise, which grows with training as the
two runs drift apart), the tokens/s ratio (speedrun / PyTorch, same card, same run) and both peak
memories, and the start-up (process start to the end of step 1). --names relabels the two sides (noise.sh compares two PyTorch runs).
Exit status 0 when within tolerance. No third-party imports."""
import json
import os
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    tol = float(argv[argv.index("--tol") + 1]) if "--tol" in argv else 0.03
    pt, us = json.load(open(argv[1])), json.load(open(argv[2]))
    na, nb = argv[argv.index("--names") + 1].split(",") if "--names" in argv else ("pytorch", "speedrun")
    a, b = pt["losses"], us["losses"]
    n = min(len(a), len(b))
    diffs = [abs(a[i] - b[i]) for i in range(n)]
    worst = max(range(n), key=lambda i: diffs[i])
    print(f"{'step':>5} {na:>9} {nb:>9} {'|diff|':>8}")
    for i in range(n):
        if i < 3 or (i + 1) % 5 == 0 or i == worst:
            print(f"{i + 1:5d} {a[i]:9.4f} {b[i]:9.4f} {diffs[i]:8.4f}{'  <- largest' if i == worst else ''}")
    print(f"largest |diff| {diffs[worst]:.4f} at step {worst + 1}; mean |diff| {sum(diffs) / n:.4f}; tolerance {tol}")
    ratio = None
    contended = os.environ.get("FID_CONTENDED") == "1"   # all.sh with FID_PAR > 1: a shared GPU
    if contended:
        print("tokens/s: not compared (other records ran on the GPU at the same time; peak memory is per process)")
    elif pt.get("tokens_per_s") and us.get("tokens_per_s"):
        ratio = us["tokens_per_s"] / pt["tokens_per_s"]
        print(f"tokens/s: {na} {pt['tokens_per_s']:.0f}, {nb} {us['tokens_per_s']:.0f}, ratio {ratio:.3f} "
              f"(card: {pt.get('device', '?')})")
        gpus = os.environ.get("FID_GPUS", "1")
        if gpus not in ("", "1"):   # all.sh with FID_GPUS: each run alone on its GPU, others on the host's rest
            print(f"tokens/s measured with the machine's other GPUs running other records (FID_GPUS={gpus}): "
                  "each GPU alone, the host's CPUs shared (a compile beside it)")
    mem = None
    if pt.get("peak_memory_bytes") and us.get("peak_memory_bytes"):
        mem = us["peak_memory_bytes"] / pt["peak_memory_bytes"]
        print(f"peak GPU memory: {na} {pt['peak_memory_bytes'] / 1e9:.2f} GB, {nb} {us['peak_memory_bytes'] / 1e9:.2f} GB, "
              f"ratio {mem:.2f}")
    start = (pt.get("first_step_s"), us.get("first_step_s"))
    if None not in start:
        print(f"start-up to the end of step 1: {na} {start[0]:.1f} s, {nb} {start[1]:.1f} s")
    ok = diffs[worst] <= tol
    print("verdict:", "MATCH" if ok else "DIFFER")
    # one line per comparison, for the session summary (README.md's table)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    print(f"summary: record {pt.get('record', '?')} | {pt.get('accum', '?')}x{pt.get('micro_batch', '?')}x{pt.get('T', '?')} "
          f"| {'eager' if pt.get('no_compile') else 'compiled'} | largest {diffs[worst]:.4f} (step {worst + 1}) "
          f"| mean {sum(diffs) / n:.4f} | {'MATCH' if ok else 'DIFFER'} | tokens/s ratio {fmt(ratio, '.3f')} "
          f"| memory ratio {fmt(mem, '.2f')} | start-up {fmt(start[0], '.1f')} / {fmt(start[1], '.1f')} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
