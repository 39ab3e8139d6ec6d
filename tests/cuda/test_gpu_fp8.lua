-- test_gpu_fp8.lua: the float8 ops on cuda against their CPU references.
--   F.to_fp8: every byte equal to the CPU's (both formats, saturating or not, f32 and bf16 input,
--     contiguous and transposed input; values over the whole range plus ties, subnormals, +-inf,
--     NaN), at sizes up to the lm_head's activations.
--   F.scaled_mm (cuBLASLt FP8): against the CPU's double sums of the same float8 inputs, relative
--     error ||gpu - ref|| / ||ref|| under 3e-4 (f32 out: Hopper adds FP8 products in reduced precision
--     between promotions to fp32; 1.3e-4 measured on an H200), 1e-2 (bf16 out), 1e-2 with fast
--     accumulation; e4m3 x e4m3, e5m2 x e4m3, e4m3 x e5m2; scales as numbers and as tensors.
--   float8 copies (x_f8:t():contiguous()) and record 19's FP8 linear (forward, dX, dW) on cuda
--   against the same on the CPU.
-- Skips (exit 77) without a usable GPU; SR_TEST_DEVICE=cpu runs it with the CPU on both sides.
local sr = speedrun
local F = sr.F
local T = require "speedrun.testing"

local DEV = os.getenv("SR_TEST_DEVICE") or "cuda"
local ok, why = sr.cuda.available()
if DEV == "cuda" and not ok then T.skip("no usable GPU: " .. tostring(why)) end
sr.manual_seed(20261203)
local nchecks = 0

-- random values over [-top, top] with special values written over the first elements
local function values(n, top, e5)
  local v = F.mul(F.sub(F.mul(sr.rand(n), 2), 1), top):tolist()
  local q = e5 and 2 ^ -16 or 2 ^ -9        -- the smallest subnormal of the format
  local special = {0, -0.0, math.huge, -math.huge, 0 / 0, q, q / 2, 1.5 * q, 3 * q / 2, 1.0625, 1.1875,
                   1.125, 1.375, 448, 464, 465, 57344, 61440, -61440, 1e30, -1e-30}
  for i = 1, math.min(#special, n) do v[i] = special[i] end
  return v
end

T.case("to_fp8: cuda bytes equal the CPU reference's", function()
  local shapes = DEV == "cuda" and {{7, 13}, {256, 768}, {512, 50304 // 8}} or {{7, 13}, {64, 96}}
  for _, sh in ipairs(shapes) do
    local n = sh[1] * sh[2]
    for _, dt in ipairs({"float8_e4m3fn", "float8_e5m2"}) do
      local e5 = dt == "float8_e5m2"
      local top = e5 and 70000 or 500
      local base = sr.tensor(values(n, top, e5)):view(sh[1], sh[2])
      for _, xdt in ipairs({"float32", "bfloat16"}) do
        for _, scale in ipairs({1, 2, 2 ^ 9, 2 ^ 29 / 2 ^ 20, 1 / 3}) do
          for _, sat in ipairs({true, false}) do
            for _, tr in ipairs({false, true}) do
              local x = base:to(xdt)
              local xd = x:to(DEV)
              if tr then x, xd = x:transpose(1, 2), xd:transpose(1, 2) end  -- the kernel's strided path
              local ref = F.to_fp8(x, dt, scale, {saturate = sat})
              local got = F.to_fp8(xd, dt, scale, {saturate = sat})
              local same = got:to("cpu"):tobytes() == ref:tobytes()
              nchecks = nchecks + 1
              T.ok(same, ("to_fp8 %s -> %s [%d,%d]%s scale %g sat %s: bytes differ"):format(xdt, dt, sh[1], sh[2],
                   tr and " transposed" or "", scale, tostring(sat)))
            end
          end
        end
      end
    end
  end
end)

T.case("float8 copies on cuda: contiguous, transposed, back to the CPU", function()
  local q = F.to_fp8(sr.randn(300, 768), "e4m3", 8)
  local g = q:to(DEV)
  T.ok(g:transpose(1, 2):contiguous():to("cpu"):tobytes() == q:transpose(1, 2):contiguous():tobytes(), "transposed copy")
  T.ok(g:narrow(2, 17, 100):contiguous():to("cpu"):tobytes() == q:narrow(2, 17, 100):contiguous():tobytes(), "narrowed")
  nchecks = nchecks + 2
end)

local function mm_case(M, K, N, adt, bdt, odt, opts)
  local a = F.to_fp8(sr.randn(M, K), adt, 4)
  local w = F.to_fp8(sr.randn(N, K), bdt, 4)
  local o = {scale_a = 0.25, scale_b = 0.25, out_dtype = odt, use_fast_accum = opts.fast}
  local ref = F.scaled_mm(a, w:transpose(1, 2), o)
  local ga, gw = a:to(DEV), w:to(DEV)
  if opts.tensors then
    o.scale_a, o.scale_b = sr.tensor({0.25}):to(DEV), sr.tensor({0.25}):to(DEV)
  end
  local got = F.scaled_mm(ga, gw:transpose(1, 2), o)
  T.eq(got.dtype, odt)
  local err = T.rel_err(got, ref)
  -- Hopper's FP8 MMA adds in reduced precision between promotions to fp32: cuBLASLt promotes
  -- often by default (f32 out: 3e-4; 1.08e-4 to 1.28e-4 measured on an H200 at K 768 and 4096),
  -- rarely with fast accumulation (1e-2, bf16's tolerance)
  local tol = opts.fast and 1e-2 or (odt == "float32" and 3e-4 or 1e-2)
  nchecks = nchecks + 1
  T.ok(err <= tol, ("scaled_mm [%d,%d]x[%d,%d] %s x %s -> %s%s%s: rel err %.2e > %g"):format(M, K, K, N, adt, bdt, odt,
       opts.fast and " fast" or "", opts.tensors and " tensor scales" or "", err, tol))
end

T.case("scaled_mm: cuda (cuBLASLt FP8) against the CPU's double sums", function()
  -- (the CPU reference is a plain loop: the shapes stay below ~1e9 multiply-adds)
  local shapes = DEV == "cuda" and {{16, 32, 16}, {100, 768, 304}, {512, 768, 2048}}
                 or {{16, 32, 16}, {20, 64, 48}}
  local pairs = {{"e4m3", "e4m3"}, {"e5m2", "e4m3"}, {"e4m3", "e5m2"}}
  for _, s in ipairs(shapes) do
    for _, p in ipairs(pairs) do
      for _, odt in ipairs({"bfloat16", "float32"}) do
        mm_case(s[1], s[2], s[3], p[1], p[2], odt, {})
        mm_case(s[1], s[2], s[3], p[1], p[2], odt, {tensors = true})
        mm_case(s[1], s[2], s[3], p[1], p[2], odt, {fast = true})
      end
    end
  end
  if DEV == "cuda" then
    mm_case(64, 768, 50304, "e4m3", "e4m3", "bfloat16", {fast = true})  -- the lm_head's width
    mm_case(768, 2048, 2048, "e4m3", "e5m2", "float32", {})             -- dW: K = tokens, f32 out
  end
end)

T.case("scaled_mm on cuda: layout errors name the argument", function()
  local a = F.to_fp8(sr.randn(32, 64), "e4m3", 1):to(DEV)
  local w = F.to_fp8(sr.randn(48, 64), "e4m3", 1):to(DEV)
  T.raises(function() return F.scaled_mm(a, w:transpose(1, 2):contiguous()) end, "column-major")
  if DEV == "cuda" then
    T.raises(function() return F.scaled_mm(a, w:transpose(1, 2), {scale_a = sr.tensor({1}), scale_b = sr.tensor({1})}) end,
             "scale_a is on cpu")
  end
  nchecks = nchecks + 2
end)

-- record 19's FP8 lm_head (x * 2, W * 32, grad * 2^29 in e5m2) as a recipe writes it
local function fp8_linear(x_s, w_s, grad_s)
  return require("speedrun.autograd").Function{
    name = "fp8_linear",
    forward = function(ctx, x, w)
      local x_f8, w_f8 = F.to_fp8(x, "e4m3", x_s), F.to_fp8(w, "e4m3", w_s)
      ctx.xt_f8, ctx.wt_f8 = x_f8:transpose(1, 2):contiguous(), w_f8:transpose(1, 2):contiguous()
      return F.scaled_mm(x_f8, w_f8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / w_s, use_fast_accum = true})
    end,
    backward = function(ctx, g)
      local dx = F.scaled_mm(F.to_fp8(g, "e5m2", grad_s), ctx.wt_f8:transpose(1, 2), {scale_a = 1 / grad_s, scale_b = 1 / w_s})
      local gt_f8 = F.to_fp8(g:transpose(1, 2), "e5m2", grad_s)
      local dwt = F.scaled_mm(ctx.xt_f8, gt_f8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / grad_s, out_dtype = "float32"})
      return dx, dwt:transpose(1, 2)
    end,
  }
end

T.case("record 19's FP8 linear: forward, dX and dW on cuda against the CPU", function()
  local M, K, N = DEV == "cuda" and 256 or 32, 768 // (DEV == "cuda" and 1 or 12), DEV == "cuda" and 50304 // 8 or 48
  local x0 = F.mul(sr.randn(M, K), 0.5):to("bfloat16")
  local w0 = F.mul(sr.randn(N, K), 1 / 32)
  local r = F.mul(sr.randn(M, N), 1e-6):to("bfloat16")
  local res = {}
  for _, dev in ipairs({"cpu", DEV}) do
    -- leaves of their own (x0:to("cpu") is x0 itself: the cuda copy would otherwise be a non-leaf)
    local x, w = x0:to(dev):detach(), w0:to(dev):detach()
    x.requires_grad, w.requires_grad = true, true
    local y = fp8_linear(2, 32, 2 ^ 29)(x, w)
    F.sum(F.mul(y, r:to(dev))):backward()
    res[#res + 1] = {y = y, dx = x.grad, dw = w.grad}
  end
  for _, k in ipairs({"y", "dx", "dw"}) do
    local err = T.rel_err(res[2][k], res[1][k])
    nchecks = nchecks + 1
    T.ok(err <= 1e-2, ("fp8 linear %s: rel err %.2e"):format(k, err))
  end
end)

print(("%d checks on %s"):format(nchecks, DEV))
T.done()
