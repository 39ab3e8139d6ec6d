-- The backward pass's gradient routing (core/autograd.h, docs/cuda.md "Fused in autograd"), on
-- the CPU: every case runs with each fusion on and off and compares the gradients.
--   slices: the pieces of F.split / narrow written in place by their consumers (sdpa, views):
--           the same arithmetic, so the gradients are equal bit for bit; pieces with no gradient,
--           pieces used twice, and fewer copies in the split's phase (profile).
--   cast_gemm: the weight gradient of a matmul whose operand is a bf16 cast of an fp32 leaf,
--           added by an fp32-output GEMM into the leaf's .grad: within bf16 rounding of the
--           unfused result, and at least as close to a float64 reference.
--   recompute: a linear's input that is relu2's or rms_norm's output is saved weakly and
--           recomputed in the backward: gradients bit for bit, the forward's memory lower, once per
--           producer whether or not it is still alive, in-place changes after the save refused.
--   accum: a GEMM's gradient (linear's dX, matmul's operands) added into the gradient its input has
--           received so far, beta = 1 (q, k, v of one normed input): within one rounding of the
--           unfused sum, no add launched; a sum another gradient shares is copied first.
--   defer: a linear of cast fp32 weights whose input is recomputed relu2/gelu output leaves its
--           weight gradient until the producer's backward ran, so the recompute and that backward
--           are adjacent launches the step compiler fuses; bit for bit, refused where it must be.
-- Then whole micro-scale training steps of records 1 and 5 (record 1 also under autocast, with
-- micro-batch accumulation) with the fusions on and off.
local sr = require "speedrun"
local T = require "speedrun.testing"
local util = require "speedrun.util"
local F = sr.F
local profile = sr.profile

local maxdiff, maxabs, with = T.max_diff, T.max_abs, T.with_grad_fusion

-- grads of the leaves after f(leaves...):backward(), as float64 copies
local function grads(leaves, f)
  for _, l in ipairs(leaves) do l.grad = nil end
  f(table.unpack(leaves)):backward()
  local out = {}
  for i, l in ipairs(leaves) do out[i] = l.grad and F.cast(l.grad, "float64") or false end
  return out
end

local function same_grads(name, leaves, f, what)
  local on = with(name, true, function() return grads(leaves, f) end)
  local off = with(name, false, function() return grads(leaves, f) end)
  for i = 1, #leaves do
    T.eq(not on[i], not off[i], what .. ": leaf " .. i .. " has a gradient either way")
    if on[i] then T.eq(maxdiff(on[i], off[i]), 0, what .. ": leaf " .. i .. " bit for bit") end
  end
  return on
end

local function leaf(shape, dtype)
  return F.cast(sr.randn(shape), dtype or "float32"):detach():requires_grad_()
end

T.case("switches: grad_fusion names, defaults on, unknown name", function()
  T.eq(sr.grad_fusion("slices"), true)
  T.eq(sr.grad_fusion("cast_gemm"), true)
  T.eq(sr.grad_fusion("recompute"), true)
  T.eq(sr.grad_fusion("scale"), true)
  T.eq(sr.grad_fusion("accum"), true)
  T.eq(sr.grad_fusion("defer"), true)
  T.raises(function() sr.grad_fusion("nope") end, "(slices, cast_gemm, recompute, scale, accum, defer)")
  T.eq(sr.grad_fusion("slices", false), true)
  T.eq(sr.grad_fusion("slices"), false)
  sr.grad_fusion("slices", true)
  T.raises(function() sr.grad_fusion("nope") end, "unknown fusion")
end)

T.case("slices: the qkv split into attention (view, transpose) == unfused, no copies", function()
  sr.manual_seed(1)
  local B, Tn, H, D = 2, 5, 2, 4
  local C = H * D
  local x, w = leaf({B, Tn, C}), leaf({3 * C, C})
  local function f(x, w)
    local q, k, v = table.unpack(F.split(F.linear(x, w), C, 3))
    local function heads(t) return t:view(B, Tn, H, D):transpose(2, 3) end
    local y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), {causal = true})
    return F.sum(F.square(y:transpose(2, 3):reshape(B, Tn, C)))
  end
  same_grads("slices", {x, w}, f, "qkv")
  local function copies(on)
    return with("slices", on, function()
      local n = 0
      for _, r in ipairs(profile.run(function() f(x, w):backward() end)) do
        if r.phase == "bwd:split" and (r.name == "copy" or r.name == "fill") then n = n + r.calls end
      end
      return n
    end)
  end
  T.eq(copies(false), 3, "unfused: one copy per piece")
  T.eq(copies(true), 0, "fused: the pieces were written in place")
end)

T.case("attention on the CPU reads q, k, v as views, writes [B,T,H,D] memory order: no copies either way", function()
  sr.manual_seed(2)
  local B, Tn, H, D = 2, 6, 2, 4
  local C = H * D
  local x, w = leaf({B, Tn, C}), leaf({3 * C, C})
  local rows = profile.run(function()
    local q, k, v = table.unpack(F.split(F.linear(x, w), C, 3))
    local function heads(t) return t:view(B, Tn, H, D):transpose(2, 3) end
    local y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), {causal = true})
    T.ok(y:transpose(2, 3):is_contiguous(), "the output in [B,T,H,D] memory order")
    F.sum(F.square(y:transpose(2, 3):reshape(B, Tn, C))):backward()   -- a view, as on the GPU
  end)
  for _, r in ipairs(rows) do  -- (the sum's backward broadcasts its gradient with a copy)
    T.ok(r.name ~= "copy" or r.phase == "bwd:sum", ("no copy (%s in %s)"):format(r.name, r.phase))
  end
  -- the same numbers as attention over contiguous copies of q, k, v
  local q, k, v = sr.randn(B, H, Tn, D), sr.randn(B, H, Tn, D), sr.randn(B, H, Tn, D)
  local a = F.scaled_dot_product_attention(q:transpose(2, 3):contiguous():transpose(2, 3), k, v:transpose(2, 3):contiguous():transpose(2, 3), {causal = true})
  T.close(a, F.scaled_dot_product_attention(q, k, v, {causal = true}), 0)
end)

T.case("slices: a piece without a gradient, a piece read twice, pieces in any order", function()
  sr.manual_seed(2)
  local x = leaf({3, 4, 12})
  same_grads("slices", {x}, function(x)   -- v unused: zeros in its slice
    local q, k = table.unpack(F.split(x, 4, 3))
    local s = F.scaled_dot_product_attention(q:view(3, 1, 4, 4), k:view(3, 1, 4, 4), q:view(3, 1, 4, 4))
    return F.sum(s)
  end, "unused piece")
  same_grads("slices", {x}, function(x)   -- q through attention and through a second reader
    local q, k, v = table.unpack(F.split(x, 4, 3))
    local a = F.scaled_dot_product_attention(q:view(3, 1, 4, 4), k:view(3, 1, 4, 4), v:view(3, 1, 4, 4), {causal = true})
    return F.sum(F.square(a)) + F.sum(q * 3) + F.sum(F.exp(v))
  end, "piece read twice")
  same_grads("slices", {x}, function(x)   -- attention's operands in reversed piece order
    local q, k, v = table.unpack(F.split(x, 4, 3))
    local a = F.scaled_dot_product_attention(v:view(3, 1, 4, 4), k:view(3, 1, 4, 4), q:view(3, 1, 4, 4))
    local b = F.scaled_dot_product_attention(k:view(3, 1, 4, 4), q:view(3, 1, 4, 4), v:view(3, 1, 4, 4))
    return F.sum(F.square(a)) + F.sum(b)
  end, "two readers, any order")
  same_grads("slices", {x}, function(x)   -- uneven pieces, dim 2, chunk, split of a split
    local a, b = table.unpack(F.split(x, 3, 2))
    local c1, c2 = table.unpack(F.chunk(a, 2, 3))
    return F.sum(F.square(c1)) + F.sum(c2:transpose(1, 2) * 2) + F.sum(F.tanh(b))
  end, "uneven, chunk, nested")
  local x3 = leaf({3, 24})
  same_grads("slices", {x3}, function(x)   -- 12 pieces (record 14's value-embedding chunks): one node
    local p = F.chunk(x, 12, 2)
    local s = F.sum(F.square(p[1])) + F.sum(F.tanh(p[12]))
    for i = 2, 11, 3 do s = s + F.sum(p[i] * i) end
    return s
  end, "12 chunks")
  local x2 = leaf({4, 18}, "bfloat16")
  same_grads("slices", {x2}, function(x)
    local p = F.split(x, 1, 2)           -- more than core.split_max (16) pieces: narrows
    return F.sum(F.square(F.cast(p[1], "float32"))) + F.sum(F.cast(p[4], "float32") * 3)
  end, "narrows, bf16")
end)

T.case("slices: narrow, select and a view of a narrow == unfused", function()
  sr.manual_seed(3)
  local x = leaf({5, 6})
  same_grads("slices", {x}, function(x)
    local a = x:narrow(2, 2, 3)
    local b = x:select(1, 4)
    local c = x:narrow(1, 1, 2):reshape(12)
    return F.sum(F.square(a)) + F.sum(b * 5) + F.sum(F.exp(c)) + F.sum(x:narrow(2, 2, 3))
  end, "narrows")
end)

-- the weight gradient of F.linear / F.matmul with a bf16 cast of an fp32 leaf
local function cast_case(what, f, leaves, ref_leaves, n_backward)
  local function run()
    for _, l in ipairs(leaves) do l.grad = nil end
    for _ = 1, n_backward do f(table.unpack(leaves)):backward() end
    local out = {}
    for i, l in ipairs(leaves) do out[i] = F.cast(l.grad, "float64") end
    return out
  end
  local on = with("cast_gemm", true, run)
  local off = with("cast_gemm", false, run)
  for _, l in ipairs(ref_leaves) do l.grad = nil end
  for _ = 1, n_backward do f(table.unpack(ref_leaves)):backward() end
  for i = 1, #leaves do
    T.eq(leaves[i].grad.dtype, leaves[i].dtype, what .. ": grad dtype")
    local ref = ref_leaves[i].grad
    local scale = maxabs(ref)
    local d = maxdiff(on[i], off[i]) / scale
    T.ok(d < 2 ^ -7 * n_backward, ("%s: leaf %d fused vs unfused %.3g (bf16 rounding)"):format(what, i, d))
    local eon, eoff = maxdiff(on[i], ref) / scale, maxdiff(off[i], ref) / scale
    T.ok(eon <= eoff * 1.5 + 1e-6, ("%s: leaf %d fused error %.3g vs unfused %.3g (vs float64)"):format(what, i, eon, eoff))
  end
end

T.case("cast_gemm: linear and matmul weight gradients into fp32 leaves, accumulated", function()
  sr.manual_seed(4)
  local x = F.cast(sr.randn(3, 7, 16), "bfloat16")
  local w = leaf({24, 16})
  local w64 = F.cast(w, "float64"):detach():requires_grad_()
  local x64 = F.cast(x, "float64")
  local function lin(x) return function(w) return F.sum(F.square(F.linear(x, F.cast(w, x.dtype)))) end end
  local function lin_ref(w) return F.sum(F.square(F.linear(x64, w))) end
  -- the float64 reference leaf goes through the float64 composition
  cast_case("linear", function(l) if l.dtype == "float64" then return lin_ref(l) end return lin(x)(l) end, {w}, {w64}, 1)
  cast_case("linear, 3 backward passes (beta = 1)", function(l)
    if l.dtype == "float64" then return lin_ref(l) end
    return lin(x)(l)
  end, {w}, {w64}, 3)
  local a = F.cast(sr.randn(9, 24), "bfloat16")
  local a64 = F.cast(a, "float64")
  cast_case("matmul b, and a second reader of the cast", function(l)
    if l.dtype == "float64" then return F.sum(F.square(F.matmul(a64, l))) + F.sum(l * 2) end
    local c = F.cast(l, "bfloat16")
    return F.sum(F.square(F.cast(F.matmul(a, c), "float32"))) + F.sum(F.cast(c, "float32") * 2)
  end, {w}, {w64}, 2)
  -- the fused path writes fewer launches: no bf16 dW, no cast, no add
  local function launches(on)
    return with("cast_gemm", on, function()
      w.grad = nil
      local rows = profile.run(function() lin(x)(w):backward(); lin(x)(w):backward() end)
      local n = {}
      for _, r in ipairs(rows) do
        local k = r.name .. (r.sub and "." .. r.sub or "") .. " " .. r.phase
        n[k] = (n[k] or 0) + r.calls
      end
      return n
    end)
  end
  local off, on = launches(false), launches(true)
  T.eq(off["copy bwd:cast"], 2, "unfused: a cast back per backward")
  T.eq(on["copy bwd:cast"], nil, "fused: no cast back")
  T.eq(off["binary.add bwd:accumulate"], 1, "unfused: an add into .grad")
  T.eq(on["binary.add bwd:accumulate"], nil, "fused: no add into .grad")
end)

-- whole micro-scale training steps of a record, fusions on vs off: the gradient of every parameter
-- over the first step's micro-batches, then the losses of `steps` training steps and the parameters
local function record_case(n, o)
  local recipe = assert(util.load_recipe(("../tasks/record_%02d/recipe.lua"):format(n)))
  local function run(on)
    local ctx = assert(util.recipe_context(recipe, "micro", "cpu", 7))
    if o.amp then ctx.amp = true end
    if o.micro_batch then ctx.config.micro_batch = o.micro_batch end
    local cfg = ctx.config
    sr.manual_seed(11)
    local vocab = math.min(cfg.model.vocab_size, 50257)
    local x, y = sr.randint(0, vocab, {cfg.batch.B, cfg.batch.T}), sr.randint(0, vocab, {cfg.batch.B, cfg.batch.T})
    local old = {}
    for _, name in ipairs {"slices", "cast_gemm", "recompute", "scale", "accum", "defer"} do old[name] = sr.grad_fusion(name, on[name] or false) end
    local ok, res = pcall(function()
      -- the gradients of the first step (micro-batches accumulated), before any update
      local mb = o.micro_batch or cfg.batch.B
      local nmb = cfg.batch.B // mb
      for i = 1, nmb do
        local _, loss = ctx.model(x:narrow(1, (i - 1) * mb + 1, mb), y:narrow(1, (i - 1) * mb + 1, mb), ctx.amp)
        if nmb > 1 then loss = loss / nmb end
        loss:backward()
      end
      local g = {}
      for i, p in ipairs(ctx.params) do g[i] = p.grad and F.cast(p.grad, "float64") or false; p.grad = nil end
      local losses = {}
      for s = 1, o.steps do
        if recipe.schedule then recipe.schedule(ctx, s) end
        losses[s] = recipe.train_step(ctx, s, {x = x, y = y, step = s}):item()
      end
      local ps = {}
      for i, p in ipairs(ctx.params) do ps[i] = F.cast(p, "float64") end
      return {losses = losses, grads = g, params = ps}
    end)
    for name, v in pairs(old) do sr.grad_fusion(name, v) end
    if not ok then error(res, 0) end
    return res
  end
  local off = run {}
  for _, on in ipairs {{slices = true}, {recompute = true}, {scale = true}, {accum = true},
                       {slices = true, cast_gemm = true, recompute = true, scale = true},
                       {cast_gemm = true, recompute = true, defer = true},
                       {slices = true, cast_gemm = true, recompute = true, scale = true, accum = true, defer = true}} do
    local r = run(on)
    local what = ("record %d%s, slices %s cast_gemm %s recompute %s scale %s accum %s defer %s"):format(n,
      o.amp and " (amp)" or "", on.slices, on.cast_gemm, on.recompute, on.scale, on.accum, on.defer)
    local exact = not (on.cast_gemm and o.amp) and not on.accum   -- accum: one rounding where there were two
    for s = 1, o.steps do
      local d = math.abs(r.losses[s] - off.losses[s])
      if exact then T.eq(d, 0, what .. ": loss of step " .. s)
      else T.ok(d < 1e-2, what .. ": loss of step " .. s .. " within bf16 rounding: " .. d) end
    end
    for i = 1, #off.grads do
      T.eq(not r.grads[i], not off.grads[i], what .. ": grad " .. i .. " present either way")
      if r.grads[i] then
        local d = maxdiff(r.grads[i], off.grads[i])
        if exact then T.eq(d, 0, what .. ": grad " .. i .. " bit for bit")
        else T.ok(d <= 2 ^ -6 * maxabs(off.grads[i]) + 1e-6, what .. ": grad " .. i .. " within bf16 rounding: " .. d) end
      end
      local dp = maxdiff(r.params[i], off.params[i])
      if exact then T.eq(dp, 0, what .. ": parameter " .. i .. " bit for bit") end
    end
  end
end

-- the MLP and norm of the records: linear(relu2(linear(rms_norm(x)))) in dtype dt
local function mlp(dt)
  sr.manual_seed(3)
  local x = leaf({4, 16, 32}, dt)
  local w1, w2, g = leaf({128, 32}, dt), leaf({32, 128}, dt), leaf({32}, dt)
  return {x, w1, w2, g}, function(x, w1, w2, g)
    return F.sum(F.square(F.linear(F.relu2(F.linear(F.rms_norm(x, g, 1e-6), w1)), w2)))
  end
end

-- launches of kernel name (sub) in phase, over fn
local function count(fn, name, sub, phase)
  local n = 0
  for _, r in ipairs(profile.run(fn)) do
    if r.name == name and r.sub == sub and r.phase == phase then n = n + r.calls end
  end
  return n
end

T.case("recompute: relu2 and rms_norm outputs into linears, float32 and bfloat16: bit for bit, recomputed once", function()
  for _, dt in ipairs {"float32", "bfloat16"} do
    local leaves, f = mlp(dt)
    same_grads("recompute", leaves, f, "mlp " .. dt)
    local function run() collectgarbage(); f(table.unpack(leaves)):backward() end
    T.eq(count(run, "unary", "relu2", "bwd:linear"), 1, dt .. ": relu2 recomputed for the linear")
    T.eq(count(run, "rms_norm", nil, "bwd:linear"), 1, dt .. ": rms_norm recomputed for the linear")
    T.eq(with("recompute", false, function() return count(run, "unary", "relu2", "bwd:linear") end), 0, "off: nothing recomputed")
  end
end)

T.case("recompute: the forward keeps the producer's input, not its output (memory)", function()
  sr.manual_seed(4)
  local x, w1, w2 = leaf({256, 64}), leaf({1024, 64}), leaf({64, 1024})
  local function live_after_forward(on)
    return with("recompute", on, function()
      collectgarbage()
      local base = sr.memory().current
      local y = F.linear(F.relu2(F.linear(x, w1)), w2)
      collectgarbage()
      local live = sr.memory().current - base
      F.sum(y):backward()
      return live
    end)
  end
  local h = 256 * 1024 * 4   -- one [256, 1024] f32 activation
  local on, off = live_after_forward(true), live_after_forward(false)
  T.eq(off - on, h, ("relu2's output not kept: %d bytes live on, %d off"):format(on, off))
end)

T.case("recompute: recomputed once for two consumers, also when still held (the same launches either way)", function()
  local leaves, _ = mlp("float32")
  local x, w1, w2 = leaves[1], leaves[2], leaves[3]
  local kept
  local function run()
    kept = F.relu2(F.linear(x, w1))
    F.sum(F.linear(kept, w2) + F.linear(kept, w2)):backward()
  end
  T.eq(count(run, "unary", "relu2", "bwd:linear"), 1, "alive: recomputed all the same")
  local function twice()
    collectgarbage()
    local h = F.relu2(F.linear(x, w1))
    local y = F.linear(h, w2) + F.linear(h, w2)
    h = nil
    collectgarbage()
    F.sum(y):backward()
  end
  T.eq(count(twice, "unary", "relu2", "bwd:linear"), 1, "gone, two consumers: recomputed once")
end)

T.case("recompute: through a float cast (autocast's F.linear(F.cast(rms_norm(x), bf16), w)), bit for bit", function()
  sr.manual_seed(5)
  local x, w, g = leaf({4, 16, 32}), leaf({48, 32}), leaf({32})
  local function f(x, w, g)
    local h = F.rms_norm(x, g, 1e-6)
    local wb = F.cast(w, "bfloat16")
    return F.sum(F.square(F.cast(F.linear(F.cast(h, "bfloat16"), wb) + F.linear(F.cast(h, "bfloat16"), wb), "float32")))
  end
  same_grads("recompute", {x, w, g}, f, "autocast linear")
  local function run() collectgarbage(); f(x, w, g):backward() end
  T.eq(count(run, "rms_norm", nil, "bwd:linear"), 1, "rms_norm recomputed once for both casts")
  T.eq(count(run, "copy", nil, "bwd:linear"), 2, "each cast recomputed for its linear")
end)

T.case("recompute: an output changed in place before a linear read it (no_grad) is kept, not recomputed", function()
  local leaves, _ = mlp("float32")
  local x, w1, w2 = leaves[1], leaves[2], leaves[3]
  local function f(x, w1, w2)
    local h = F.relu2(F.linear(x, w1))
    sr.no_grad(function() h:mul_(2) end)
    return F.sum(F.square(F.linear(h, w2)))
  end
  same_grads("recompute", {x, w1, w2}, f, "changed before the save")
  T.eq(count(function() f(x, w1, w2):backward() end, "unary", "relu2", "bwd:linear"), 0, "not recomputed")
end)

T.case("recompute: the producer's backward already ran (another root): refused as a second pass, no crash", function()
  local leaves, _ = mlp("float32")
  local x, w1, w2 = leaves[1], leaves[2], leaves[3]
  local h = F.relu2(F.linear(x, w1))
  local y1, y2 = F.sum(F.linear(h, w2)), F.sum(h)
  h = nil
  collectgarbage()
  y2:backward()
  T.raises(function() y1:backward() end, "trying to go through the graph a second time (relu2)")
  local g = F.rms_norm(x, nil, 1e-6)
  local z1, z2 = F.sum(F.linear(F.cast(g, "bfloat16"), F.cast(w2:transpose(1, 2):contiguous(), "bfloat16"))), F.sum(g)
  z2:backward()
  T.raises(function() z1:backward() end, "trying to go through the graph a second time (rms_norm)")
end)

T.case("recompute: modified in place after the save, alive or gone: the backward refuses", function()
  local leaves, _ = mlp("float32")
  local x, w1, w2 = leaves[1], leaves[2], leaves[3]
  local h = F.relu2(F.linear(x, w1))
  local y = F.sum(F.linear(h, w2))
  sr.no_grad(function() h:mul_(2) end)
  T.raises(function() y:backward() end, "modified in place after the forward")
  h = F.relu2(F.linear(x, w1))
  y = F.sum(F.linear(h, w2))
  sr.no_grad(function() h:mul_(2) end)
  h = nil
  collectgarbage()
  T.raises(function() y:backward() end, "modified in place after the forward")
end)

-- the records' MLP from record 12 on: bf16 activations, fp32 master weights cast at each use;
-- act(h) feeds the second linear, through a float cast when `via` names a dtype
local function cast_mlp(act, via, dt)
  sr.manual_seed(6)
  local x = leaf({4, 16, 32}, dt or "bfloat16")
  local w1, w2 = leaf({128, 32}), leaf({32, 128})
  local function bf(w) return F.cast(w, "bfloat16") end
  local function f(x, w1, w2)
    local h = act(F.linear(F.cast(x, "bfloat16"), bf(w1)))
    if via then h = F.cast(F.cast(h, via), "bfloat16") end
    return F.sum(F.square(F.linear(h, bf(w2))))
  end
  local leaves = {x, w1, w2}
  local function step()
    for _, l in ipairs(leaves) do l.grad = nil end
    f(x, w1, w2):backward()
    return {x.grad, w1.grad, w2.grad}
  end
  return leaves, f, step
end

T.case("defer: relu2 / gelu recomputed for a linear of cast weights, then their backward: adjacent, fused, bit for bit", function()
  for _, act in ipairs {{"relu2", F.relu2}, {"gelu_erf", F.gelu}} do
    local name, fn = act[1], act[2]
    local leaves, f, step = cast_mlp(fn)
    same_grads("defer", leaves, f, name)
    local want = name .. ":bfloat16 %-> " .. name .. "':bfloat16"
    local on = T.fuse_plan(step):dump()
    T.ok(on:find(want), name .. ": the recompute and the backward one group\n" .. on)
    local off = with("defer", false, function() return T.fuse_plan(step):dump() end)
    T.ok(not off:find(want), name .. ": apart without the fusion\n" .. off)
    -- the recompute is still the linear's work in a profile, and made once
    T.eq(count(step, "unary", name, "bwd:linear"), 1, name .. ": recomputed once, for the linear")
    T.eq(count(step, "gemm", nil, "bwd:linear"), 4, name .. ": dX and dW of both linears")
  end
end)

T.case("defer: through a float cast of relu2's output (autocast), the casts and relu2' in the group", function()
  local leaves, f, step = cast_mlp(F.relu2, "float32")
  same_grads("defer", leaves, f, "cast chain")
  local d = T.fuse_plan(step):dump()
  T.ok(d:find("relu2:bfloat16 %-> cast:float32 %-> cast:bfloat16 %->.*relu2':bfloat16"), d)
end)

T.case("defer: refused where dW is not the leaf's alone or the producer has another consumer; grads unchanged", function()
  sr.manual_seed(7)
  local x, w1, w2 = leaf({8, 16}, "bfloat16"), leaf({32, 16}), leaf({16, 32}, "bfloat16")
  -- w2 is a bf16 leaf, not a cast of an fp32 one: its gradient is returned, not deferred
  local function plain(x, w1, w2) return F.sum(F.square(F.linear(F.relu2(F.linear(x, F.cast(w1, "bfloat16"))), w2))) end
  same_grads("defer", {x, w1, w2}, plain, "bf16 leaf weight")
  local function step1() x.grad, w1.grad, w2.grad = nil, nil, nil; plain(x, w1, w2):backward(); return {x.grad, w2.grad} end
  T.ok(not T.fuse_plan(step1):dump():find("relu2':"), "no deferral for a plain leaf weight")
  -- relu2's output read by a second op: its backward waits for both, the linear does not defer
  local w3 = leaf({16, 32})
  local function two(x, w1, w3)
    local h = F.relu2(F.linear(x, F.cast(w1, "bfloat16")))
    return F.sum(F.square(F.linear(h, F.cast(w3, "bfloat16")))) + F.sum(h)
  end
  same_grads("defer", {x, w1, w3}, two, "two consumers")
  -- an fp32 .grad the GEMM cannot write in place (not contiguous): refused, the gradient added as before
  local function f3(x, w1, w3) return F.sum(F.square(F.linear(F.relu2(F.linear(x, F.cast(w1, "bfloat16"))), F.cast(w3, "bfloat16")))) end
  local function odd(on)
    return with("defer", on, function()
      x.grad, w1.grad = nil, nil
      w3.grad = sr.zeros({32, 16}):transpose(1, 2)
      f3(x, w1, w3):backward()
      return F.cast(w3.grad, "float64")
    end)
  end
  T.eq(maxdiff(odd(true), odd(false)), 0, "a strided .grad: the same sum")
end)

T.case("scale: loss / n of an in-place cross_entropy into a linear: the GEMMs' alpha, no pass over the logits", function()
  sr.manual_seed(5)
  local N, C, V = 12, 16, 40
  local t = sr.randint(0, V, {N})
  for _, dt in ipairs {"float32", "bfloat16"} do
    local x, w, b = leaf({N, C}, dt), leaf({V, C}, dt), leaf({V}, dt)
    -- n = 4 (a power of 2): bit for bit; the logits' mul is gone from the cross_entropy's backward
    local function f4(x, w, b) return F.cross_entropy(F.linear(x, w, b), t, {inplace = true}) / 4 end
    same_grads("scale", {x, w, b}, f4, dt .. " loss / 4")
    local function muls(on)   -- element-wise launches in the cross_entropy's backward, one backward
      return with("scale", on, function()
        local n = 0
        for _, r in ipairs(profile.run(function() f4(x, w, b):backward() end)) do
          if r.phase == "bwd:cross_entropy" and (r.name == "binary" or r.name == "unary") then n = n + r.calls end
        end
        return n
      end)
    end
    T.eq(muls(false), 1, dt .. ": unfused, one pass over the logits")
    T.eq(muls(true), 0, dt .. ": fused, none")
    -- n = 3: within rounding (alpha in fp32 against a factor rounded to the logits' dtype)
    local function f3(x, w, b) return F.cross_entropy(F.linear(x, w, b), t, {inplace = true}) / 3 - 1 end
    local on = with("scale", true, function() return grads({x, w, b}, f3) end)
    local off = with("scale", false, function() return grads({x, w, b}, f3) end)
    local tol = dt == "float32" and 1e-6 or 2 ^ -7
    for i = 1, 3 do T.ok(maxdiff(on[i], off[i]) <= tol * maxabs(off[i]), dt .. ": loss / 3 - 1, leaf " .. i .. " within rounding") end
    -- a consumer that is not a linear (a scale of the logits first): the factor applied before it, bit for bit
    local function fm(x, w) return F.cross_entropy(F.linear(x, w) * 2, t, {inplace = true}) / 4 end
    same_grads("scale", {x, w}, fm, dt .. " logits * 2, loss / 4")
    -- two losses of one constant (add's rule hands both the same gradient), and a second backward
    local function f2(x, w, b)
      return (F.cross_entropy(F.linear(x, w, b), t, {inplace = true}) + F.cross_entropy(F.linear(x, w), t, {inplace = true})) * 0.5
    end
    same_grads("scale", {x, w, b}, f2, dt .. " two losses, * 0.5")
  end
end)

-- adds launched while gradients are summed (the pass's accumulation), over fn
local function accumulate_adds(fn) return count(fn, "binary", "add", "bwd:accumulate") end

-- fused against unfused within one rounding of the sum, and no further from a float64 reference
local function accum_close(what, leaves, f, dt)
  local on = with("accum", true, function() return grads(leaves, f) end)
  local off = with("accum", false, function() return grads(leaves, f) end)
  local ref_leaves = {}
  for i, l in ipairs(leaves) do ref_leaves[i] = F.cast(l, "float64"):detach():requires_grad_() end
  local ref = grads(ref_leaves, f)
  local eps = dt == "bfloat16" and 2 ^ -7 or 2 ^ -22
  for i = 1, #leaves do
    local scale = maxabs(ref[i])
    T.ok(maxdiff(on[i], off[i]) <= 4 * eps * scale, ("%s: leaf %d fused vs unfused %.3g"):format(what, i, maxdiff(on[i], off[i]) / scale))
    local eon, eoff = maxdiff(on[i], ref[i]) / scale, maxdiff(off[i], ref[i]) / scale
    T.ok(eon <= eoff * 1.5 + eps, ("%s: leaf %d fused error %.3g vs unfused %.3g (vs float64)"):format(what, i, eon, eoff))
  end
end

T.case("accum: q, k, v projections of one normed input: dX summed by the GEMMs, no adds", function()
  sr.manual_seed(6)
  for _, dt in ipairs {"float32", "bfloat16"} do
    local x, g = leaf({3, 8, 32}, dt), leaf({32}, dt)
    local wq, wk, wv = leaf({32, 32}, dt), leaf({32, 32}, dt), leaf({32, 32}, dt)
    local function f(x, g, wq, wk, wv)
      local h = F.rms_norm(x, g, 1e-6)
      local q, k, v = F.linear(h, wq), F.linear(h, wk), F.linear(h, wv)
      return F.sum(F.square(q)) + F.sum(k * v)
    end
    local leaves = {x, g, wq, wk, wv}
    accum_close("qkv " .. dt, leaves, f, dt)
    local function run() f(table.unpack(leaves)):backward() end
    local off = with("accum", false, function() return accumulate_adds(run) end)
    local on = with("accum", true, function() return accumulate_adds(run) end)
    T.eq(off - on, 2, dt .. ": the two adds into the norm's gradient are gone (" .. off .. " -> " .. on .. ")")
  end
end)

T.case("accum: a residual stream, x + linear(norm(x)): the norm's dx added into the pass-through (+=)", function()
  sr.manual_seed(10)
  for _, ln in ipairs {false, true} do
    for _, dt in ipairs {"float32", "bfloat16"} do
      local x, g, w1, w2 = leaf({2, 6, 32}, dt), leaf({32}, dt), leaf({32, 32}, dt), leaf({32, 32}, dt)
      local function norm(t, g) return ln and F.layer_norm(t, g, nil, 1e-5) or F.rms_norm(t, g, 1e-6) end
      local function f(x, g, w1, w2)
        local h = F.tanh(x)
        h = h + F.linear(norm(h, g), w1)
        h = h + F.linear(norm(h, g), w2)
        return F.sum(F.square(h))
      end
      local what = (ln and "layer_norm " or "rms_norm ") .. dt
      accum_close(what, {x, g, w1, w2}, f, dt)
      local function run() f(x, g, w1, w2):backward() end
      local off = with("accum", false, function() return accumulate_adds(run) end)
      local on = with("accum", true, function() return accumulate_adds(run) end)
      T.eq(off - on, 2, what .. ": the norms' adds into the residual's gradient are gone (" .. off .. " -> " .. on .. ")")
    end
  end
end)

T.case("accum: matmul operands, a batched matmul, a linear with a bias", function()
  sr.manual_seed(7)
  local a, b1, b2 = leaf({6, 16}), leaf({16, 12}), leaf({16, 12})
  accum_close("matmul a read twice", {a, b1, b2}, function(a, b1, b2)
    local t = F.tanh(a)
    return F.sum(F.square(F.matmul(t, b1))) + F.sum(F.matmul(t, b2))
  end, "float32")
  accum_close("matmul b read twice", {a, b1}, function(a, b1)
    local e = F.exp(b1 * 0.1)
    return F.sum(F.square(F.matmul(a, e))) + F.sum(F.matmul(F.tanh(a), e))
  end, "float32")
  local p, q = leaf({2, 5, 8}), leaf({2, 8, 3})
  accum_close("batched", {p, q}, function(p, q)
    local s = F.sigmoid(p)
    return F.sum(F.square(F.matmul(s, q))) + F.sum(F.matmul(s, q * 2))
  end, "float32")
  local x, w, bias = leaf({4, 7, 16}), leaf({9, 16}), leaf({9})
  accum_close("linear with a bias", {x, w, bias}, function(x, w, bias)
    local h = F.relu2(x)
    return F.sum(F.square(F.linear(h, w, bias))) + F.sum(F.linear(h, w))
  end, "float32")
end)

T.case("accum: a sum that another gradient shares is copied first, never written in place", function()
  sr.manual_seed(8)
  local x, w = leaf({4, 16}), leaf({16, 16})
  -- h's gradient starts as the add's pass-through, which the linear's slot holds too while its rule
  -- runs: a GEMM writing into it would change the linear's own upstream gradient (w's gradient)
  local function f(x, w)
    local h = F.tanh(x)
    local y = F.linear(h, w) + h
    return F.sum(F.square(y))
  end
  accum_close("shared pass-through", {x, w}, f, "float32")
  local off = with("accum", false, function() return grads({x, w}, f) end)
  local function run() f(x, w):backward() end
  T.eq(with("accum", false, function() return accumulate_adds(run) end) - with("accum", true, function() return accumulate_adds(run) end),
       1, "the add is gone (a copy, then the GEMM into it)")
  -- a second backward of the same graph shape with the fusion on gives the first's numbers
  local on1 = with("accum", true, function() return grads({x, w}, f) end)
  local on2 = with("accum", true, function() return grads({x, w}, f) end)
  for i = 1, 2 do T.eq(maxdiff(on1[i], on2[i]), 0, "repeatable, leaf " .. i); T.ok(maxdiff(on1[i], off[i]) <= 1e-5 * maxabs(off[i]), "leaf " .. i) end
end)

T.case("record 1, micro: training steps with and without the fusions", function()
  record_case(1, {steps = 2})
end)

T.case("record 1, micro, autocast (bf16, cast master weights), 2 micro-batches", function()
  record_case(1, {steps = 2, amp = true, micro_batch = 2})
end)

T.case("record 5, micro: training steps with and without the fusions", function()
  record_case(5, {steps = 2})
end)

T.case("record 5, micro, autocast, 2 micro-batches", function()
  record_case(5, {steps = 1, amp = true, micro_batch = 2})
end)

T.done()
