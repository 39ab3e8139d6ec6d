# loss_head_anchor.py: the anchor of bench/loss_head.lua: the records' loss head in PyTorch on the
# same shapes (default N 65536 tokens, C 768, V 50304): z = x W^T in bf16, the softcap as the record
# scripts write it (tanh, records 9-18: logits = 30 * torch.tanh(logits / 30); logits.float();
# sigmoid, records 19-21: 30 * torch.sigmoid(logits.float() / 7.5)), F.cross_entropy, and the
# backward into W; eager and torch.compile'd (the scripts compile the whole model). Times per step
# with CUDA events (steady state, after warm-up and compilation).
# With [n] > 1 the loss is divided by n before the backward (a micro-batch of n).
#   python3 bench/loss_head_anchor.py [N] [C] [V] [tanh|sigmoid] [iters] [n]
import sys

import torch
import torch.nn.functional as F

argv = sys.argv[1:]
N = int(argv[0]) if len(argv) > 0 else 65536
C = int(argv[1]) if len(argv) > 1 else 768
V = int(argv[2]) if len(argv) > 2 else 50304
cap = argv[3] if len(argv) > 3 else "tanh"
iters = int(argv[4]) if len(argv) > 4 else 10
nmicro = int(argv[5]) if len(argv) > 5 else 1
if cap not in ("tanh", "sigmoid"):
    sys.exit(f"loss_head_anchor.py: the softcap is tanh or sigmoid, not {cap}")

torch.manual_seed(1)
x = (torch.randn(N, C, device="cuda") * 0.5).to(torch.bfloat16)
W = (torch.randn(V, C, device="cuda") * 0.05).to(torch.bfloat16).requires_grad_(True)
t = torch.randint(0, V, (N,), device="cuda")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}: loss head [{N} x {C}] x [{V} x {C}]^T bf16, "
      f"{cap} softcap{f', loss / {nmicro}' if nmicro > 1 else ''}, {iters} iterations")


def head(x, W, t):
    logits = F.linear(x, W)
    if cap == "tanh":
        logits = 30 * torch.tanh(logits / 30)
        logits = logits.float()
    else:
        logits = 30 * torch.sigmoid(logits.float() / 7.5)
    loss = F.cross_entropy(logits, t)
    return loss / nmicro if nmicro > 1 else loss


head_c = torch.compile(head, dynamic=False)


def timed(f):
    def run():
        loss = f(x, W, t)
        loss.backward()
        W.grad = None
    for _ in range(3):  # warm-up, compilation
        run()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(iters):
        run()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / iters, (torch.cuda.max_memory_allocated() - base) / 1e9


rows = []
for name, f in [("eager", head), ("compiled", head_c)]:
    ms, gb = timed(f)
    rows.append((name, ms, gb))
    print(f"{name:9s} {ms:9.3f} ms a step, {gb:.2f} GB peak above the inputs")

print(f"\n| PyTorch loss head [{N}, {C}, {V}], {cap} softcap | ms a step (CUDA events) | GB peak above the inputs |")
print("|---|---|---|")
for name, ms, gb in rows:
    print(f"| {name} | {ms:.3f} | {gb:.2f} |")
