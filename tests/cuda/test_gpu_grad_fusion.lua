-- The backward pass's gradient routing on cuda (core/autograd.h, docs/cuda.md "Fused in
-- autograd"), each fusion on vs off (skips without a GPU):
--   slices: the qkv split into the flash attention backward (bf16, D 64), whose dq/dk/dv land in
--           their slices of one gradient buffer: no copy in the split's phase, gradients equal up
--           to the order of dq's float atomics, and close to a float64 CPU reference;
--   cast_gemm: bf16 linear / matmul weight gradients added by the fp32-output GEMM into fp32
--           leaves over several backward passes (beta 0, then 1): no cast back, no add, within
--           bf16 rounding of the unfused result and at least as close to a float64 reference;
--   recompute: relu2 and rms_norm outputs (through autocast casts) recomputed for the linears'
--           weight gradients: bit for bit, each once;
--   accum: the dX of q, k and v projections of one bf16 input added by the GEMMs (beta 1, a bf16
--           out) into the gradient so far, and a residual stream's norms adding dx into it (on
--           cuda unless SR_NORM_ACC=0): no adds, within bf16 rounding of the unfused sum and about as
--           close to a float64 reference;
--   record 1 at micro scale under autocast with 2 micro-batches: the first step's gradients
--           and two training steps' losses.
local sr = speedrun or require "speedrun"
local T = require "speedrun.testing"
local cuda = require "speedrun.cuda"
local util = require "speedrun.util"
local F = sr.F
local profile = sr.profile

-- SR_TEST_DEVICE=cpu dry-runs it on the CPU (its attention takes strided gradients as well)
local DEV = os.getenv("SR_TEST_DEVICE") == "cpu" and "cpu" or "cuda"
if DEV == "cuda" then
  local ok, why = cuda.available()
  if not ok then T.skip("no usable GPU: " .. tostring(why)) end
end

local function f64(t) return F.cast(t:to("cpu"), "float64") end
local maxdiff, maxabs, with = T.max_diff, T.max_abs, T.with_grad_fusion

local function launches(fn)
  local n = {}
  for _, r in ipairs(profile.run(fn)) do
    local k = r.name .. (r.sub and "." .. r.sub or "") .. " " .. r.phase
    n[k] = (n[k] or 0) + r.calls
  end
  return n
end

T.case("slices: qkv split into flash attention (bf16, D 64): no copies, same gradients", function()
  sr.manual_seed(1)
  local B, Tn, H, D = 2, 256, 4, 64
  local C = H * D
  local x0, w0 = sr.randn(B, Tn, C), sr.randn(3 * C, C) * 0.05
  local function run(device, dtype, on)
    local x = F.cast(x0, dtype):to(device):detach():requires_grad_()
    local w = F.cast(w0, dtype):to(device):detach():requires_grad_()
    local n = with("slices", on, function()
      return launches(function()
        local q, k, v = table.unpack(F.split(F.linear(x, w), C, 3))
        local function heads(t) return t:view(B, Tn, H, D):transpose(2, 3) end
        local y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), {causal = true})
        F.sum(F.square(F.cast(y:transpose(2, 3):reshape(B, Tn, C), "float32"))):backward()
      end)
    end)
    return x.grad, w.grad, n
  end
  local xo, wo, no = run(DEV, "bfloat16", false)
  local xn, wn, nn = run(DEV, "bfloat16", true)
  local xr, wr = run("cpu", "float64", false)
  T.eq(no["copy bwd:split"], 3, "unfused: a copy per piece")
  T.eq(nn["copy bwd:split"], nil, "fused: no copy")
  for _, c in ipairs {{xn, xo, xr, "x"}, {wn, wo, wr, "w"}} do
    local s = maxabs(c[3])
    T.ok(maxdiff(c[1], c[2]) / s < 2e-2, c[4] .. ": fused vs unfused")
    T.ok(maxdiff(c[1], c[3]) / s < 5e-2, c[4] .. ": fused vs float64 CPU")
  end
end)

T.case("cast_gemm: bf16 linear and matmul weight gradients into fp32 leaves, 3 passes", function()
  sr.manual_seed(2)
  local x = F.cast(sr.randn(4, 64, 128), "bfloat16"):to(DEV)
  local a = F.cast(sr.randn(96, 384), "bfloat16"):to(DEV)
  local w0 = sr.randn(384, 128) * 0.05
  local losses = {
    linear = function(w, xx) return F.sum(F.square(F.cast(F.linear(xx, F.cast(w, xx.dtype)), "float32"))) end,
    mixed = function(w, xx, aa)   -- the cast read by a linear, a matmul and an element-wise op
      local c = F.cast(w, xx.dtype)
      return F.sum(F.square(F.cast(F.linear(xx, c), "float32"))) + F.sum(F.cast(F.matmul(aa, c), "float32")) +
             F.sum(F.cast(c, "float32"))
    end,
  }
  for _, name in ipairs {"linear", "mixed"} do
    local loss = losses[name]
    local function run(on)
      local w = w0:to(DEV):detach():requires_grad_()
      local n = with("accum", false, function()   -- (accum would take the adds of either run)
        return with("cast_gemm", on, function()
          return launches(function() for _ = 1, 3 do loss(w, x, a):backward() end end)
        end)
      end)
      return w.grad, n
    end
    local go, no = run(false)
    local gn, nn = run(true)
    local w64 = F.cast(w0, "float64"):detach():requires_grad_()
    for _ = 1, 3 do loss(w64, f64(x), f64(a)):backward() end
    T.eq(gn.dtype, "float32")
    if name == "linear" then
      T.eq(no["copy bwd:cast"] - (nn["copy bwd:cast"] or 0), 3, "linear: no cast back of dW")
      T.eq(nn["binary.add bwd:accumulate"], nil, "linear: no add into .grad")
    else
      T.ok((nn["binary.add bwd:accumulate"] or 0) < (no["binary.add bwd:accumulate"] or 0), "mixed: fewer adds")
    end
    local s = maxabs(w64.grad)
    local eo, en = maxdiff(go, w64.grad) / s, maxdiff(gn, w64.grad) / s
    T.ok(maxdiff(gn, go) / s < 3 * 2 ^ -7, name .. ": fused vs unfused within bf16 rounding")
    T.ok(en <= eo * 1.5 + 1e-6, ("%s: fused error %.3g vs unfused %.3g"):format(name, en, eo))
  end
end)

T.case("recompute: the records' MLP and norms on the device (bf16, autocast casts): bit for bit, recomputed once", function()
  sr.manual_seed(3)
  local x0, w10, w20, g0 = sr.randn(4, 256, 128), sr.randn(512, 128) * 0.05, sr.randn(128, 512) * 0.05, sr.randn(128)
  local function run(on)
    local x = x0:to(DEV):detach():requires_grad_()
    local w1, w2, g = w10:to(DEV):requires_grad_(), w20:to(DEV):requires_grad_(), g0:to(DEV):requires_grad_()
    local n = with("recompute", on, function()
      return launches(function()
        local function lin(a, w) return F.linear(F.cast(a, "bfloat16"), F.cast(w, "bfloat16")) end
        local h = F.relu2(lin(F.rms_norm(x, g, 1e-6), w1))
        F.sum(F.square(F.cast(lin(h, w2), "float32"))):backward()
      end)
    end)
    return {x.grad, w1.grad, w2.grad, g.grad}, n
  end
  local off, noff = run(false)
  local on, non = run(true)
  for i = 1, 4 do T.eq(maxdiff(on[i], off[i]), 0, "gradient " .. i .. " bit for bit") end
  T.eq(non["unary.relu2 bwd:linear"], 1, "relu2 recomputed for the second linear")
  T.eq(non["rms_norm bwd:linear"], 1, "rms_norm recomputed for the first linear's cast")
  T.eq(noff["unary.relu2 bwd:linear"], nil, "off: nothing recomputed")
end)

-- f(x, ws...) on a bf16 x [4, 128, 256] and nw bf16 weights [256, 256], backward with the accumulate
-- fusion off and on: x's gradients within bf16 rounding of each other and the fused one about as
-- close to a float64 reference; returns the adds launched while summing gradients, off and on
local function accum_case(seed, nw, f)
  sr.manual_seed(seed)
  local x = F.cast(sr.randn(4, 128, 256), "bfloat16"):to(DEV):detach():requires_grad_()
  local ws = {}
  for i = 1, nw do ws[i] = F.cast(sr.randn(256, 256) * 0.06, "bfloat16"):to(DEV):detach():requires_grad_() end
  local function run(on)
    return with("accum", on, function()
      x.grad = nil
      for i = 1, nw do ws[i].grad = nil end   -- (an add into a .grad would count)
      local n = 0
      for _, r in ipairs(profile.run(function() f(x, table.unpack(ws)):backward() end)) do
        if r.name == "binary" and r.phase == "bwd:accumulate" then n = n + r.calls end
      end
      return f64(x.grad), n
    end)
  end
  local off, noff = run(false)
  local on, non = run(true)
  local x64, w64 = f64(x):detach():requires_grad_(), {}
  for i = 1, nw do w64[i] = f64(ws[i]):detach() end
  f(x64, table.unpack(w64)):backward()
  local scale = maxabs(x64.grad)
  T.ok(maxdiff(on, off) <= 2 ^ -6 * scale, ("fused vs unfused %.3g (bf16 rounding)"):format(maxdiff(on, off) / scale))
  local eon, eoff = maxdiff(on, x64.grad) / scale, maxdiff(off, x64.grad) / scale
  T.ok(eon <= eoff * 1.5 + 2 ^ -8, ("fused error %.3g vs unfused %.3g (vs float64)"):format(eon, eoff))
  return noff, non
end

T.case("accum: q, k, v projections of one bf16 input, dX summed by the GEMMs (beta 1)", function()
  local noff, non = accum_case(9, 3, function(x, wq, wk, wv)
    local h = F.tanh(x)
    return F.sum(F.square(F.cast(F.linear(h, wq), "float32"))) + F.sum(F.cast(F.linear(h, wk) * F.linear(h, wv), "float32"))
  end)
  T.eq(noff - non, 2, "the two adds into tanh's gradient are gone (" .. noff .. " -> " .. non .. ")")
end)

T.case("accum: a residual stream, x + linear(rms_norm(x)) in bf16: the norm's dx added into the sum (dx +=)", function()
  -- the norms' dx += runs on the CPU always, on cuda unless SR_NORM_ACC=0
  local norm_on = DEV == "cpu" or os.getenv("SR_NORM_ACC") ~= "0"
  local noff, non = accum_case(10, 2, function(x, w1, w2)
    local h = F.tanh(x)
    h = h + F.linear(F.rms_norm(h, nil, 1e-6), w1)
    h = h + F.linear(F.rms_norm(h, nil, 1e-6), w2)
    return F.sum(F.cast(F.square(h), "float32"))
  end)
  T.eq(noff - non, norm_on and 2 or 0, ("the norms' adds gone where their dx += is on (%d -> %d)"):format(noff, non))
end)

T.case("record 1, micro, autocast, 2 micro-batches: fused vs unfused", function()
  local recipe = assert(util.load_recipe("../tasks/record_01/recipe.lua"))
  local function run(on)
    local old = {slices = sr.grad_fusion("slices", on), cast_gemm = sr.grad_fusion("cast_gemm", on),
                 scale = sr.grad_fusion("scale", on),   -- scale: l / 2 into the lm_head's GEMMs as alpha
                 accum = sr.grad_fusion("accum", on)}
    local okk, res = pcall(function()
      local ctx = assert(util.recipe_context(recipe, "micro", DEV, 7))
      ctx.amp, ctx.config.micro_batch = true, 2
      sr.manual_seed(11)
      local B, Tn = ctx.config.batch.B, ctx.config.batch.T
      local x, y = sr.randint(0, 50257, {B, Tn}):to(DEV), sr.randint(0, 50257, {B, Tn}):to(DEV)
      for i = 1, 2 do
        local _, l = ctx.model(x:narrow(1, 2 * i - 1, 2), y:narrow(1, 2 * i - 1, 2), true)
        local half = l / 2
        half:backward()
      end
      local g = {}
      for i, p in ipairs(ctx.params) do g[i] = f64(p.grad); p.grad = nil end
      local losses = {}
      for s = 1, 2 do
        recipe.schedule(ctx, s)
        losses[s] = recipe.train_step(ctx, s, {x = x, y = y, step = s}):item()
      end
      return {g = g, losses = losses}
    end)
    for name, v in pairs(old) do sr.grad_fusion(name, v) end
    if not okk then error(res, 0) end
    return res
  end
  local off, on = run(false), run(true)
  for i = 1, #off.g do
    T.ok(maxdiff(on.g[i], off.g[i]) <= 2 ^ -6 * maxabs(off.g[i]) + 1e-6, "grad " .. i .. " within bf16 rounding")
  end
  for s = 1, 2 do T.ok(math.abs(on.losses[s] - off.losses[s]) < 1e-2, "loss of step " .. s) end
end)

T.done()
