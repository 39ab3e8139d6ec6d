# flex_anchor.py: the anchor of bench/flex_attention.lua: PyTorch's compiled flex_attention over
# the same BlockMask (block 128), the same shapes (T = 65,536, H = 6, D = 128, bf16) and the same
# documents (the deterministic generator of flex_attention.lua: lengths -600 ln(1 - u), u from a
# 32-bit LCG seeded 12345). Masks: causal & same document & window (1024, 1792, 128 tokens: the
# element mask through create_block_mask, compiled, as record 12), the record 16 block window (8
# blocks, BlockMask.from_kv_blocks with the document_causal mask_mod), documents only. Times per
# call (CUDA events), steady state; TFLOP/s over the unmasked pairs (fwd 4 pairs D H, fwd+bwd 3.5x).
# Also dense causal SDPA at B 64 x T 1024. usage: python3 bench/flex_anchor.py [iters=20]
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

iters = int(sys.argv[1]) if len(sys.argv) > 1 else 20
T, H, D, BS = 65536, 6, 128, 128
flex = torch.compile(flex_attention, dynamic=False)
cbm = torch.compile(create_block_mask, dynamic=False)


def doc_ids(n, mean, seed):
    ids, state, did, left = [], seed, 0, 0
    for i in range(n):
        if left == 0:
            if i > 0:
                did += 1
            state = (state * 1664525 + 1013904223) % 4294967296
            left = max(1, math.floor(-mean * math.log(1 - state / 4294967296)))
        ids.append(did)
        left -= 1
    return ids, did + 1


ids_list, ndocs = doc_ids(T, 600, 12345)
docs = torch.tensor(ids_list, dtype=torch.int32, device="cuda")


def pairs(window, wblocks):
    total, start = 0, 0
    for i in range(T):
        if i > 0 and ids_list[i] != ids_list[i - 1]:
            start = i
        lo = start
        if window:
            lo = max(lo, i - window + 1)
        if wblocks:
            lo = max(lo, (i // BS - wblocks + 1) * BS)
        total += i - lo + 1
    return total


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


def element_mask(window):
    def mask_mod(b, h, q_idx, kv_idx):
        m = (q_idx >= kv_idx) & (docs[q_idx] == docs[kv_idx])
        if window:
            m = m & (q_idx - kv_idx < window)
        return m
    return mask_mod


def block_window_mask(n_blocks):  # record 16's construction
    nb = T // BS
    low = docs.view(-1, BS)[:, 0].contiguous()
    high = docs.view(-1, BS)[:, -1].contiguous()
    kv = torch.arange(nb, dtype=torch.int32, device="cuda")
    q = kv[:, None]
    wbt = torch.tensor(n_blocks, dtype=torch.int32, device="cuda")
    nonzero = (q >= kv) & (q - kv < wbt) & (low[:, None] <= high) & (low <= high[:, None])
    full = (q > kv) & (q - kv < wbt) & (low[:, None] == high) & (low == high[:, None])

    def ordered(dense):
        num = dense.sum(dim=-1, dtype=torch.int32)
        idx = dense.argsort(dim=-1, descending=True, stable=True).to(torch.int32)
        return num[None, None].contiguous(), idx[None, None].contiguous()

    kn, ki = ordered(nonzero & ~full)
    fn, fi = ordered(full)
    return BlockMask.from_kv_blocks(kn, ki, fn, fi, BLOCK_SIZE=BS, mask_mod=element_mask(None))


q, k, v = (torch.randn(1, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
gy = torch.randn(1, H, T, D, device="cuda", dtype=torch.bfloat16)
print(f"flex_anchor: torch {torch.__version__}, T={T} H={H} D={D} bf16, {ndocs} documents (mean {T / ndocs:.0f} tokens), "
      f"block {BS}, {iters} iterations")
print("| mask | unmasked pairs (of causal) | blocks full / partial | build first / steady | fwd | fwd + bwd |")
print("|---|---|---|---|---|---|")
for name, window, wblocks in [("window 1024 (record 12)", 1024, None), ("window 1792 (records 13-16 late)", 1792, None),
                              ("window 128 (record 16 early)", 128, None),
                              ("window 8 blocks (record 16, from_kv_blocks)", None, 8), ("documents only", None, None)]:
    if wblocks:
        build = lambda: block_window_mask(wblocks)
    else:
        build = lambda: cbm(element_mask(window), None, None, T, T, device="cuda", BLOCK_SIZE=BS)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    mask = build()
    torch.cuda.synchronize()
    first = (time.perf_counter() - t0) * 1e3
    steady = timed(build)
    nfull = int(mask.full_kv_num_blocks.sum()) if mask.full_kv_num_blocks is not None else 0
    npart = int(mask.kv_num_blocks.sum())
    np_ = pairs(window, wblocks)
    flop = 4.0 * np_ * D * H
    with torch.no_grad():
        f = timed(lambda: flex(q, k, v, block_mask=mask))

    def fwd_bwd():
        y = flex(q, k, v, block_mask=mask)
        torch.autograd.grad(y, (q, k, v), gy)

    fb = timed(fwd_bwd)
    print(f"| {name} | {100 * np_ / (T * (T + 1) / 2):.2f} % | {nfull} / {npart} | {first:.1f} / {steady:.3f} ms | "
          f"{f:.3f} ms ({flop / f / 1e9:.0f} TFLOP/s) | {fb:.3f} ms ({3.5 * flop / fb / 1e9:.0f} TFLOP/s) |")

B2, T2 = 64, 1024
q2, k2, v2 = (torch.randn(B2, H, T2, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
g2 = torch.randn(B2, H, T2, D, device="cuda", dtype=torch.bfloat16)
flop2 = 4.0 * B2 * H * D * T2 * (T2 + 1) / 2


def sdpa():
    y = F.scaled_dot_product_attention(q2, k2, v2, is_causal=True)
    torch.autograd.grad(y, (q2, k2, v2), g2)


fs = timed(sdpa)
print(f"dense causal B={B2} T={T2} H={H} D={D} fwd+bwd: sdpa {fs:.3f} ms ({3.5 * flop2 / fs / 1e9:.0f} TFLOP/s)")
