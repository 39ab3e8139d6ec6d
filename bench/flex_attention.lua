-- flex_attention.lua: F.flex_attention at the records' shapes (issue 16), next to the anchor
-- (bench/flex_anchor.py: PyTorch's compiled flex_attention over the same BlockMask).
-- One flat sequence of T = 65,536 tokens, H = 6 heads of D = 128, bf16; documents of
-- exponentially distributed length (mean 600; the same deterministic generator as
-- flex_anchor.py, so both see the same documents); masks causal ∧ same document ∧ window
-- (1024: record 12; 1792: records 13-16 late; 128: record 16 early; 8 blocks: record 16's
-- block window). Times per call, steady state (CUDA events through speedrun.synchronize);
-- TFLOP/s over the unmasked pairs only: forward 4·pairs·D·H, forward+backward 3.5× that (the
-- anchors.md convention). Also: the block-mask build (first and steady), the first mask's
-- forward+backward op by op, dense causal attention at B 64 × T 1024, D 128 through flex_attention
-- and through SDPA, and at records 1-11's 32 × 1024, H 12, D 64 through SDPA. q, k, v are the
-- [B, H, T, D] views of [B, T, H, D] leaves, as a model's projection makes them (since 2026-12-06,
-- twenty-third session: before, [B, H, T, D] leaves, whose gradients each backward copied).
-- usage: build/speedrun run bench/flex_attention.lua [iters=20]
-- (SR_FLEX_T=2048 SR_FLEX_DEVICE=cpu: a small dry run of the script on the CPU)
local sr = speedrun
local F = sr.F
local A = require "speedrun.attention"

local iters = tonumber(arg and arg[1]) or 20
local T, H, D, BS = tonumber(os.getenv("SR_FLEX_T") or "65536"), 6, 128, 128
local dev = os.getenv("SR_FLEX_DEVICE") or (sr.cuda_available() and "cuda" or "cpu")
if dev ~= "cuda" and not os.getenv("SR_FLEX_DEVICE") then print("flex_attention bench: no GPU, nothing to time"); return end

-- documents: lengths -600 ln(1 - u), u from a 32-bit LCG (flex_anchor.py: the same numbers)
local function doc_ids(n, mean, seed)
  local ids, state, id, left = {}, seed, 0, 0
  local function u() state = (state * 1664525 + 1013904223) % 4294967296; return state / 4294967296 end
  for i = 1, n do
    if left == 0 then
      if i > 1 then id = id + 1 end
      left = math.max(1, math.floor(-mean * math.log(1 - u())))
    end
    ids[i] = id
    left = left - 1
  end
  return ids, id + 1
end
local docs, ndocs = doc_ids(T, 600, 12345)

-- unmasked pairs of a mask (per head): row i sees j <= i in its document, i - j < window
-- (tokens) and i // BS - j // BS < window_blocks
local function pairs(window, wblocks)
  local total, start = 0, 0
  for i = 0, T - 1 do
    if i > 0 and docs[i + 1] ~= docs[i] then start = i end
    local lo = start
    if window then lo = math.max(lo, i - window + 1) end
    if wblocks then lo = math.max(lo, (i // BS - wblocks + 1) * BS) end
    total = total + (i - lo + 1)
  end
  return total
end

local function timed(fn)
  for _ = 1, 3 do fn() end
  sr.synchronize()
  local t0 = sr.clock()
  for _ = 1, iters do fn() end
  sr.synchronize()
  return (sr.clock() - t0) / iters * 1e3
end

-- q, k, v as the records pass them: [B, H, T, D] views of [B, T, H, D] tensors (the projection's
-- layout), the leaves holding the gradients being the [B, T, H, D] ones (so their gradients are
-- adopted as the kernels write them, [B, T, H, D], as in a model; leaves of the [B, H, T, D] shape
-- would cost each backward three layout copies of 100 MB that no recipe makes)
local function leaves(b, t, h, d)
  local l = {}
  for i = 1, 3 do
    l[i] = sr.randn(b, t, h, d):to(dev, "bfloat16")
    l[i].requires_grad = true
  end
  return l
end
-- the [B, H, T, D] views, made anew for each backward (a view is a node of the graph it frees)
local function views(l) return l[1]:transpose(2, 3), l[2]:transpose(2, 3), l[3]:transpose(2, 3) end
local function fresh(l)  -- each backward writes fresh gradients (no accumulation)
  for _, x in ipairs(l) do x.grad = nil end
  return views(l)
end

local ids = sr.tensor(docs, {dtype = "int32"}):to(dev)
local qkv = leaves(1, T, H, D)
local q, k, v = views(qkv)  -- the forward-only timing's
local gy = sr.randn(1, H, T, D):to(dev, "bfloat16")

print(("flex_attention: T=%d H=%d D=%d bf16, %d documents (mean %.0f tokens), block %d, %d iterations"):format(
  T, H, D, ndocs, T / ndocs, BS, iters))
print("| mask | unmasked pairs (of causal) | blocks full / partial | build first / steady | fwd | fwd + bwd |")
print("|---|---|---|---|---|---|")
local profiled_mask  -- the first mask's, profiled op by op below
local masks = {
  {"window 1024 (record 12)", {window = 1024}}, {"window 1792 (records 13-16 late)", {window = 1792}},
  {"window 128 (record 16 early)", {window = 128}}, {"window 8 blocks (record 16, device tensor)", {window_blocks = 8}},
  {"documents only", {}},
  -- where the Hopper forward starts to win (flex_narrow in kernels/flex_attention.cu: below 512 tokens
  -- the default keeps the mma.sync one; SR_FLEX_WGMMA=1 forces the Hopper ones, =0 the mma.sync ones)
  {"window 256", {window = 256}}, {"window 384", {window = 384}}, {"window 512", {window = 512}},
}
for _, m in ipairs(masks) do
  local o = m[2]
  local function build()
    local wb = o.window_blocks and sr.tensor({o.window_blocks}, {dtype = "int32"}):to(dev):view()
    return A.block_mask {T = T, block = BS, doc_ids = ids, window = o.window, window_blocks = wb, device = dev}
  end
  sr.synchronize()
  local t0 = sr.clock()
  local mask = build()
  sr.synchronize()
  local first = (sr.clock() - t0) * 1e3
  local steady = timed(build)
  local st = mask:stats()
  local np = pairs(o.window, o.window_blocks)
  local flop = 4.0 * np * D * H
  local f = timed(function() sr.no_grad(function() return F.flex_attention(q, k, v, mask) end) end)
  local fb = timed(function()
    local q, k, v = fresh(qkv)
    local y = F.flex_attention(q, k, v, mask)
    y:backward(gy)
  end)
  print(("| %s | %.2f %% | %d / %d | %.2f / %.3f ms | %.3f ms (%.0f TFLOP/s) | %.3f ms (%.0f TFLOP/s) |"):format(
    m[1], 100 * np / (T * (T + 1) / 2), st.full, st.partial, first, steady, f, flop / f / 1e9, fb, 3.5 * flop / fb / 1e9))
  if m == masks[1] then profiled_mask = mask end
end

-- where the first mask's forward+backward goes, op by op (kernel time on the stream, CUDA events): the
-- backward op's time (its delta pre-pass, dq zeroing and conversion included) against the call's wall clock
do
  local ms, rows = sr.profile.time(function()
    local q, k, v = fresh(qkv)
    F.flex_attention(q, k, v, profiled_mask):backward(gy)
  end, iters, sr.synchronize)
  local kms = 0
  print(("\n%s forward+backward, op by op (%d calls, %.3f ms a call on the wall clock):"):format(masks[1][1], iters, ms))
  for _, r in ipairs(rows) do
    kms = kms + r.ms / iters
    print(("  %-30s %-24s %-5s %4d calls %9.3f ms each"):format(sr.profile.op_name(r), r.phase, r.dtype, r.calls, r.ms / r.calls))
  end
  print(("  %-30s %9.3f ms a call in kernels"):format("total", kms))
end

-- dense causal: B 64 x T 1024 through flex_attention (causal block mask) and SDPA (records 5-11's heads:
-- H 6, D 128)
local B2, T2 = dev == "cuda" and 64 or 1, 1024
local l2 = leaves(B2, T2, H, D)
local g2 = sr.randn(B2, H, T2, D):to(dev, "bfloat16")
local causal = A.block_mask {T = T2, block = BS, device = dev}
local flop2 = 4.0 * B2 * H * D * T2 * (T2 + 1) / 2
local ff = timed(function() local q2, k2, v2 = fresh(l2); F.flex_attention(q2, k2, v2, causal):backward(g2) end)
local fs = timed(function() local q2, k2, v2 = fresh(l2); F.scaled_dot_product_attention(q2, k2, v2):backward(g2) end)
print(("dense causal B=%d T=%d H=%d D=%d fwd+bwd: flex_attention %.3f ms (%.0f TFLOP/s), sdpa %.3f ms (%.0f TFLOP/s); anchor (PyTorch SDPA, anchors.md) 1.255 ms"):format(
  B2, T2, H, D, ff, 3.5 * flop2 / ff / 1e9, fs, 3.5 * flop2 / fs / 1e9))
-- dense causal at records 1-4's shapes (B 32 x T 1024, H 12, D 64: the model's heads), forward and
-- forward+backward through SDPA; the anchor: bench/attention_anchor.py 32 12 1024 64 1 (the flex part runs it)
do
  local B3, H3, D3 = dev == "cuda" and 32 or 1, 12, 64
  local l3 = leaves(B3, T2, H3, D3)
  local q3, k3, v3 = views(l3)
  local g3 = sr.randn(B3, H3, T2, D3):to(dev, "bfloat16")
  local flop3 = 4.0 * B3 * H3 * D3 * T2 * (T2 + 1) / 2
  local f3 = timed(function() sr.no_grad(function() return F.scaled_dot_product_attention(q3, k3, v3) end) end)
  local fb3 = timed(function() local a, b, c = fresh(l3); F.scaled_dot_product_attention(a, b, c):backward(g3) end)
  print(("dense causal B=%d T=%d H=%d D=%d (records 1-4): sdpa fwd %.3f ms (%.0f TFLOP/s), fwd+bwd %.3f ms (%.0f TFLOP/s)"):format(
    B3, T2, H3, D3, f3, flop3 / f3 / 1e9, fb3, 3.5 * flop3 / fb3 / 1e9))
end
print("anchor (anchors.md, PyTorch 2.11 compiled flex_attention, H200): window 1024 fwd 0.510 ms, fwd+bwd 2.000 ms; " ..
      "window 1792 0.583 / 2.228 ms; window 128 0.301 / 1.299 ms; run bench/flex_anchor.py in the same call for the ratio")
