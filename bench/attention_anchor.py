# attention_anchor.py: PyTorch's F.scaled_dot_product_attention (bf16, [B,H,T,D]) forward and
# backward timed with CUDA events at the shapes of bench_attention.c; FLOPs counted the same way.
# usage: python3 bench/attention_anchor.py B H T D causal [iters]
import sys
import torch
import torch.nn.functional as F

B, H, T, D, causal = (int(a) for a in sys.argv[1:6])
iters = int(sys.argv[6]) if len(sys.argv) > 6 else 50
q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
do = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)


def timed(fn):
    for _ in range(3):
        fn()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(iters):
        fn()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / iters


fwd_flop = 4.0 * B * H * T * T * D * (0.5 if causal else 1.0)
o = F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
f = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal)))
b = timed(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
print(f"torch {torch.__version__} SDPA B={B} H={H} T={T} D={D} causal={causal}: fwd {f:.3f} ms {fwd_flop / f / 1e9:.1f} TFLOP/s"
      f" | bwd {b:.3f} ms {2.5 * fwd_flop / b / 1e9:.1f} TFLOP/s")
