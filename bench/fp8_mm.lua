-- fp8_mm.lua: the lm_head GEMMs of records 19-21 in FP8 (F.to_fp8 + F.scaled_mm, cuBLASLt) against
-- bf16 (F.matmul) of the same shapes, in one call on one GPU. Forward y = x W^T, backward dX = g W
-- and dW = g^T x, at M tokens (default 65536 = 8 sequences of 8192; record 19 runs 8*64*1024
-- tokens over 8 GPUs), K = 768, N = 50304. Reports ms per GEMM, TFLOP/s, and the casts' cost.
--   speedrun run bench/fp8_mm.lua [M] [K] [N] [iters]
local sr = speedrun
local F = sr.F

local M, K, N = tonumber(arg and arg[1]) or 65536, tonumber(arg and arg[2]) or 768, tonumber(arg and arg[3]) or 50304
local iters = tonumber(arg and arg[4]) or 20
local ok, why = sr.cuda.available()
if not ok then print("fp8_mm: no usable GPU: " .. tostring(why)) os.exit(77) end
sr.manual_seed(1)

local function timed(name, flops, fn)
  for _ = 1, 3 do fn() end  -- warm-up: plans, heuristics, allocator
  sr.cuda.synchronize()
  local t0 = sr.clock()
  for _ = 1, iters do fn() end
  sr.cuda.synchronize()
  local ms = (sr.clock() - t0) / iters * 1e3
  print(("%-44s %9.3f ms %8.1f TFLOP/s"):format(name, ms, flops / (ms * 1e-3) / 1e12))
  collectgarbage()
  return ms
end

local x = F.mul(sr.randn(M, K, {device = "cuda"}), 0.5):to("bfloat16")
local w = F.mul(sr.randn(N, K, {device = "cuda"}), 0.02):to("bfloat16")
local g = F.mul(sr.randn(M, N, {device = "cuda"}), 1e-6):to("bfloat16")
local x_s, w_s, g_s = 2, 32, 2 ^ 29                       -- record 19's scales
local x8, w8 = F.to_fp8(x, "e4m3", x_s), F.to_fp8(w, "e4m3", w_s)
local xt8, wt8 = x8:transpose(1, 2):contiguous(), w8:transpose(1, 2):contiguous()
local g8, gt8 = F.to_fp8(g, "e5m2", g_s), F.to_fp8(g:transpose(1, 2), "e5m2", g_s)
local fl = 2 * M * N * K
print(("lm_head GEMMs M=%d K=%d N=%d, %d iterations, %s"):format(M, K, N, iters, sr.cuda.available() and "cuda" or "?"))

local rows = {}
local function pair(what, bf16_fn, fp8_fn)
  local b = timed(what .. " bf16", fl, bf16_fn)
  local f = timed(what .. " fp8", fl, fp8_fn)
  rows[#rows + 1] = ("| %s | %.3f | %.3f | %.2fx |"):format(what, b, f, b / f)
end
pair("forward  y = x W^T   [M,N]", function() return F.matmul(x, w:transpose(1, 2)) end,
     function() return F.scaled_mm(x8, w8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / w_s, use_fast_accum = true}) end)
pair("backward dX = g W    [M,K]", function() return F.matmul(g, w) end,
     function() return F.scaled_mm(g8, wt8:transpose(1, 2), {scale_a = 1 / g_s, scale_b = 1 / w_s}) end)
pair("backward dW^T = x^T g [K,N] f32", function() return F.matmul(x:transpose(1, 2), g) end,
     function() return F.scaled_mm(xt8, gt8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / g_s, out_dtype = "float32"}) end)
timed("cast x -> e4m3 [M,K]", 0, function() return F.to_fp8(x, "e4m3", x_s) end)
timed("cast g -> e5m2 [M,N]", 0, function() return F.to_fp8(g, "e5m2", g_s) end)
timed("cast g^T -> e5m2 [N,M] (transposed read)", 0, function() return F.to_fp8(g:transpose(1, 2), "e5m2", g_s) end)
print("\n| GEMM | bf16 ms | fp8 ms | speed-up |\n|---|---|---|---|")
for _, r in ipairs(rows) do print(r) end
