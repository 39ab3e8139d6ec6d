# xent_anchor.py: the anchor of bench/xent.lua: torch.nn.functional.cross_entropy on the same
# shapes (default logits [32768, 50257] bf16: record 1's micro-batch), random targets with 3% of
# them ignore_index (-100), eager and torch.compile'd. Times per step with CUDA events (steady
# state, after warm-up and compilation), and GB/s over the ideal bytes of bench/xent.lua: the
# logits read once (N V e) for the loss, read once and the gradient written once (2 N V e) for
# loss and gradient (PyTorch writes the gradient into a new buffer; the engine's inplace mode
# writes it over the logits). Cases: the loss alone; loss and gradient; the same with
# (loss / 16).backward() (micro-batches); compiled under bf16 autocast, where cross_entropy runs
# in f32 (record 1's script: llm.c's train_gpt2.py calls it on autocast logits).
#   python3 bench/xent_anchor.py [N] [V] [bfloat16|float32] [iters] [peak GB/s, default 4800]
import sys

import torch
import torch.nn.functional as F

argv = sys.argv[1:]
N = int(argv[0]) if len(argv) > 0 else 32768
V = int(argv[1]) if len(argv) > 1 else 50257
dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[argv[2] if len(argv) > 2 else "bfloat16"]
iters = int(argv[3]) if len(argv) > 3 else 20
peak = float(argv[4]) if len(argv) > 4 else 4800.0
esz = 2 if dtype == torch.bfloat16 else 4
nve = N * V * esz

torch.manual_seed(1)
x = torch.randn(N, V, device="cuda").to(dtype)
t = torch.randint(0, V, (N,), device="cuda")
t[torch.rand(N, device="cuda") < 0.03] = -100
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}: cross_entropy [{N}, {V}] {dtype}, "
      f"{iters} iterations; N V e = {nve / 1e9:.3f} GB; peak {peak:.0f} GB/s")


def ce(a, b):
    return F.cross_entropy(a, b)


ce_c = torch.compile(ce, dynamic=False)


def timed(fn):
    for _ in range(3):  # warm-up, compilation
        fn()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(iters):
        fn()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / iters


xl = x.detach().clone().requires_grad_(True)


def step(f, scale=None, autocast=False):
    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = f(xl, t)
        if scale:
            loss = loss / scale
        loss.backward()
        xl.grad = None
    return run


def loss_only(f):
    def run():
        with torch.no_grad():
            f(x, t)
    return run


rows = []
for name, fn, ideal in [
    ("loss only, eager", loss_only(ce), nve),
    ("loss only, compiled", loss_only(ce_c), nve),
    ("loss and gradient, eager", step(ce), 2 * nve),
    ("loss and gradient, compiled", step(ce_c), 2 * nve),
    ("loss / 16 and gradient, compiled", step(ce_c, 16), 2 * nve),
    ("loss and gradient, compiled, autocast", step(ce_c, None, True), 2 * nve),
]:
    ms = timed(fn)
    gbs = ideal / (ms * 1e-3) / 1e9
    print(f"{name:40s} {ms:9.3f} ms a step {gbs:8.1f} GB/s over the ideal {ideal / 1e9:.2f} GB ({100 * gbs / peak:.0f}% of {peak:.0f})")
    rows.append(f"| PyTorch {name} | {ms:.3f} | {gbs:.1f} |")
print(f"\n| case [{N}, {V}] {str(dtype).replace('torch.', '')} | ms a step | GB/s over the ideal bytes |\n|---|---|---|")
print("\n".join(rows))
