-- test_fp8.lua: F.to_fp8 (x.mul(scale).to(float8), saturating) and F.scaled_mm (torch._scaled_mm)
-- on the CPU reference, against hand-computed float8 bit patterns: rounding ties to even,
-- subnormals, saturation at +-448 / +-57344, infinities and NaN, both formats; the GEMM against
-- sums done by hand; float8 copies (contiguous, transposed) and reads; argument errors.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local function bytes(t) return {t:tobytes():byte(1, -1)} end
local function cast(vals, dt, scale, opts, xdt)
  return bytes(F.to_fp8(sr.tensor(vals, {dtype = xdt or "float32"}), dt, scale or 1, opts))
end
local function same(got, want, msg)
  T.eq(#got, #want, msg .. " count")
  for i = 1, #want do
    if got[i] ~= want[i] then
      error(("%s: element %d is 0x%02x, expected 0x%02x"):format(msg, i, got[i], want[i]), 2)
    end
  end
end

local inf = math.huge

T.case("e4m3fn: exact values, ties to even, subnormals, saturation", function()
  same(cast({0, -0.0, 1, -1, 1.5, 448, -448, 2 ^ -6}, "float8_e4m3fn"),
       {0x00, 0x80, 0x38, 0xb8, 0x3c, 0x7e, 0xfe, 0x08}, "exact")
  -- 1 + 1/16 lies halfway between 1 (0x38) and 1.125 (0x39): even 0x38; 1.1875 between 0x39 and 0x3a: 0x3a
  same(cast({1.0625, 1.1875, 1.0626, -1.0625, 1.0624}, "e4m3"), {0x38, 0x3a, 0x39, 0xb8, 0x38}, "ties")
  -- subnormals: quantum 2^-9; 2^-10 ties to 0, 3*2^-10 to 2*2^-9 (0x02), 7.5*2^-9 to 2^-6 (0x08)
  same(cast({2 ^ -9, 2 ^ -10, 3 * 2 ^ -10, 2 ^ -10 * 1.01, 7 * 2 ^ -9, 7.5 * 2 ^ -9, -2 ^ -9, 2 ^ -12},
            "e4m3"), {0x01, 0x00, 0x02, 0x01, 0x07, 0x08, 0x81, 0x00}, "subnormals")
  -- 464 ties between 448 (0x7e) and 480 (no such value): 448; beyond saturates
  same(cast({449, 464, 465, 1e9, inf, -inf, -500}, "e4m3"), {0x7e, 0x7e, 0x7e, 0x7e, 0x7e, 0xfe, 0xfe}, "saturation")
  -- saturate = false: torch's .to(float8_e4m3fn), NaN (0x7f) beyond the range
  same(cast({464, 465, inf, -inf, 448}, "e4m3", 1, {saturate = false}), {0x7e, 0x7f, 0x7f, 0xff, 0x7e}, "no saturation")
  local n = cast({0 / 0}, "e4m3")[1]
  T.eq(n & 0x7f, 0x7f, "NaN")
end)

T.case("e5m2: exact values, ties to even, subnormals, saturation", function()
  same(cast({0, 1, -1, 1.5, 57344, 2 ^ -14}, "float8_e5m2"), {0x00, 0x3c, 0xbc, 0x3e, 0x7b, 0x04}, "exact")
  -- 1.125 between 1 (0x3c) and 1.25 (0x3d): 0x3c; 1.375 between 0x3d and 0x3e: 0x3e
  same(cast({1.125, 1.375, 1.126}, "e5m2"), {0x3c, 0x3e, 0x3d}, "ties")
  same(cast({2 ^ -16, 2 ^ -17, 3 * 2 ^ -17, 3.5 * 2 ^ -16}, "e5m2"), {0x01, 0x00, 0x02, 0x04}, "subnormals")
  -- 61440 ties between 57344 and 65536 (the infinity): even is the infinity
  same(cast({60000, 61440, 1e6, inf, -inf}, "e5m2"), {0x7b, 0x7b, 0x7b, 0x7b, 0xfb}, "saturation")
  same(cast({60000, 61440, 1e6, inf, -inf}, "e5m2", 1, {saturate = false}), {0x7b, 0x7c, 0x7c, 0x7c, 0xfc}, "inf")
  local n = cast({0 / 0}, "e5m2")[1]
  T.eq(n & 0x7f, 0x7f, "NaN")
end)

T.case("scales, bfloat16 input, reads and copies of float8 tensors", function()
  -- the product is one f32 multiply: 1 * 32 = 2^5 (0x60); 0.75 * 2^9 = 384 (0x7c in e4m3)
  same(cast({1, 0.75}, "e4m3", 32), {0x60, 0x5c}, "scale 32")
  same(cast({0.75, 1}, "e4m3", 2 ^ 9), {0x7c, 0x7e}, "scale 2^9 (1 * 512 saturates)")
  same(cast({1.0625, 3}, "e4m3", 1, nil, "bfloat16"), {0x38, 0x44}, "bfloat16 x")
  local q = F.to_fp8(sr.tensor({{1, 2, 3}, {-4, 0.5, 448}}), "float8_e4m3fn", 1)
  T.eq(q.dtype, "float8_e4m3")
  T.close(q:tolist(), {{1, 2, 3}, {-4, 0.5, 448}}, 0)
  T.close(q:to("float32"), {{1, 2, 3}, {-4, 0.5, 448}}, 0)
  -- transposed copies (torch's x_f8.t().contiguous()) and the same from a transposed input
  local qt = q:transpose(1, 2):contiguous()
  T.close(qt:tolist(), {{1, -4}, {2, 0.5}, {3, 448}}, 0)
  same(bytes(qt), bytes(F.to_fp8(sr.tensor({{1, 2, 3}, {-4, 0.5, 448}}):transpose(1, 2), "e4m3", 1)), "to_fp8 of x:transpose(1, 2)")
  T.raises(function() return F.cast(sr.tensor({1}), "float8_e4m3") end, "F.to_fp8")
  T.raises(function() return F.to_fp8(sr.tensor({1}), "bfloat16", 1) end, "bad argument #2")
  T.raises(function() return F.to_fp8(sr.tensor({1}, {dtype = "float64"}), "e4m3", 1) end, "float32 or bfloat16")
  T.raises(function() return F.to_fp8(sr.tensor({1}), "e4m3", inf) end, "finite")
end)

-- a [M,K] and W [N,K] of small integers (exact in e4m3 and e5m2), scales as torch passes them
local function mm_inputs(M, N, K)
  local A, W = {}, {}
  for i = 1, M do A[i] = {} for k = 1, K do A[i][k] = (i * 3 + k * 5) % 7 - 3 end end
  for j = 1, N do W[j] = {} for k = 1, K do W[j][k] = (j * 5 + k) % 5 - 2 end end
  return A, W
end
local function ref(A, W, s)
  local out = {}
  for i = 1, #A do
    out[i] = {}
    for j = 1, #W do
      local acc = 0
      for k = 1, #A[1] do acc = acc + A[i][k] * W[j][k] end
      out[i][j] = acc * s
    end
  end
  return out
end

T.case("scaled_mm: x @ W^T with per-tensor scales, bf16 and f32 out, e5m2 x e4m3", function()
  local M, N, K = 3, 32, 48
  local A, W = mm_inputs(M, N, K)
  -- the record's casts: x * 2 and W * 32 into e4m3; the dequantisation scales 1/2 and 1/32
  local a = F.to_fp8(sr.tensor(A), "e4m3", 2)
  local w = F.to_fp8(sr.tensor(W), "e4m3", 32)
  local y = F.scaled_mm(a, w:transpose(1, 2), {scale_a = 1 / 2, scale_b = 1 / 32, out_dtype = "float32"})
  T.eq(y.dtype, "float32")
  T.close(y, ref(A, W, 1), 0)
  local yb = F.scaled_mm(a, w:transpose(1, 2), {scale_a = sr.tensor({0.5}), scale_b = sr.tensor({1 / 32})})
  T.eq(yb.dtype, "bfloat16")
  T.close(yb, ref(A, W, 1), 1e-2)
  -- the backward's dX: grad (e5m2, scale 2^29 in record 19; here 8) @ W, W as column-major [N,K]
  local g = F.to_fp8(sr.tensor(ref(A, W, 1 / 64)), "e5m2", 8)
  local wT = F.to_fp8(sr.tensor(W):transpose(1, 2), "e4m3", 32)      -- W^T contiguous [K,N]; :transpose(1, 2) is [N,K] column-major
  local dx = F.scaled_mm(g, wT:transpose(1, 2), {scale_a = 1 / 8, scale_b = 1 / 32, out_dtype = "float32"})
  local gv = g:to("float32"):tolist()
  local want = {}
  for i = 1, M do
    want[i] = {}
    for k = 1, K do
      local acc = 0
      for j = 1, N do acc = acc + gv[i][j] / 8 * W[j][k] end
      want[i][k] = acc
    end
  end
  T.close(dx, want, 1e-6)
end)

T.case("scaled_mm: layout, dtype and shape errors name the argument", function()
  local A, W = mm_inputs(4, 16, 32)
  local a, w = F.to_fp8(sr.tensor(A), "e4m3", 1), F.to_fp8(sr.tensor(W), "e4m3", 1)
  T.raises(function() return F.scaled_mm(a, w) end, "bad argument #2")           -- [16,32]: K mismatch
  T.raises(function() return F.scaled_mm(a, w:transpose(1, 2):contiguous()) end, "column-major")
  T.raises(function() return F.scaled_mm(a:transpose(1, 2), w:transpose(1, 2)) end, "row-major")
  T.raises(function() return F.scaled_mm(sr.tensor(A), w:transpose(1, 2)) end, "float8")
  local a20 = F.to_fp8(sr.zeros(4, 20), "e4m3", 1)
  T.raises(function() return F.scaled_mm(a20, F.to_fp8(sr.zeros(16, 20), "e4m3", 1):transpose(1, 2)) end, "not a multiple of 16")
  local g = F.to_fp8(sr.tensor(A), "e5m2", 1)
  T.raises(function() return F.scaled_mm(g, F.to_fp8(sr.tensor(W), "e5m2", 1):transpose(1, 2)) end, "e5m2 x e5m2")
  T.raises(function() return F.scaled_mm(a, w:transpose(1, 2), {scale_a = sr.tensor({1, 2}), scale_b = sr.tensor({1})}) end,
           "one-element float32")
  T.raises(function() return F.scaled_mm(a, w:transpose(1, 2), {scale_a = sr.tensor({1}), scale_b = 1}) end, "both")
  T.raises(function() return F.scaled_mm(a, w:transpose(1, 2), {out_dtype = "float64"}) end, "out_dtype")
  -- a view that starts off a 16-byte boundary
  local flat = F.to_fp8(sr.zeros(4 * 32 + 8), "e4m3", 1)
  T.raises(function() return F.scaled_mm(flat:narrow(1, 9, 128):view(4, 32), w:transpose(1, 2)) end, "16-byte")
end)

-- The records' FP8 lm_head (record 19's mm_op) as a recipe writes it: a custom autograd function
-- whose forward and backward are these ops, the float8 copies saved for the backward. With small
-- integers every cast is exact, so its gradients equal F.linear's in float32 exactly.
local function fp8_linear(x_s, w_s, grad_s)
  local ag = require "speedrun.autograd"
  return ag.Function{
    name = "fp8_linear",
    forward = function(ctx, x, w)
      local x_f8, w_f8 = F.to_fp8(x, "e4m3", x_s), F.to_fp8(w, "e4m3", w_s)
      -- the backward's layouts: x_f8^T contiguous, and W^T contiguous (column-major W for dX)
      ctx.xt_f8, ctx.wt_f8 = x_f8:transpose(1, 2):contiguous(), w_f8:transpose(1, 2):contiguous()
      return F.scaled_mm(x_f8, w_f8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / w_s, use_fast_accum = true})
    end,
    backward = function(ctx, g)
      local g_f8 = F.to_fp8(g, "e5m2", grad_s)
      local dx = F.scaled_mm(g_f8, ctx.wt_f8:transpose(1, 2), {scale_a = 1 / grad_s, scale_b = 1 / w_s})
      -- dW^T [K,N] = x^T [K,M] @ g [M,N], g column-major: F.to_fp8(g^T) is g^T contiguous
      local gt_f8 = F.to_fp8(g:transpose(1, 2), "e5m2", grad_s)
      local dwt = F.scaled_mm(ctx.xt_f8, gt_f8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / grad_s,
                                                                  out_dtype = "float32"})
      return dx, dwt:transpose(1, 2)
    end,
  }
end

T.case("an FP8 linear as a custom autograd function (record 19's mm_op): exact on integers", function()
  local M, N, K = 16, 32, 48
  local A, W = mm_inputs(M, N, K)
  local x = sr.tensor(A, {dtype = "bfloat16", requires_grad = true})
  local w = sr.tensor(W, {requires_grad = true})
  local y = fp8_linear(2, 32, 2 ^ 4)(x, w)
  T.eq(y.dtype, "bfloat16")
  local R = {}
  for i = 1, M do R[i] = {} for j = 1, N do R[i][j] = (i + 2 * j) % 5 - 2 end end
  local r = sr.tensor(R, {dtype = "bfloat16"})
  F.sum(F.mul(y, r)):backward()
  local x2 = sr.tensor(A, {requires_grad = true})
  local w2 = sr.tensor(W, {requires_grad = true})
  local y2 = F.linear(x2, w2)
  F.sum(F.mul(y2, r:to("float32"))):backward()
  T.close(y:to("float32"), y2, 0)
  T.close(x.grad:to("float32"), x2.grad, 0)
  T.eq(w.grad.dtype, "float32")
  T.close(w.grad, w2.grad, 0)
end)
