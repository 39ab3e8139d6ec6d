-- The tape: accumulation into .grad, no_grad, detach, custom Lua functions, graph reuse and
-- in-place modification errors.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

T.case("gradients accumulate across backward calls and zero_grad clears them", function()
  local w = sr.tensor({1, 2, 3}, {requires_grad = true})
  F.sum(F.square(w)):backward()
  T.close(w.grad, {2, 4, 6})
  F.sum(F.mul(w, 3)):backward()
  T.close(w.grad, {5, 7, 9})
  w.grad = nil
  T.eq(w.grad, nil)
  F.sum(w):backward()
  T.close(w.grad, {1, 1, 1})
end)

T.case("a tensor used twice sums both paths", function()
  local x = sr.tensor({2.0}, {requires_grad = true})
  local y = x * x + x * 3   -- dy/dx = 2x + 3
  y:backward()
  T.close(x.grad, {7})
end)

T.case("explicit upstream gradient", function()
  local x = sr.tensor({1, 2}, {requires_grad = true})
  local y = x * 2
  y:backward(sr.tensor({10, 100}))
  T.close(x.grad, {20, 200})
  T.raises(function() (x * 2):backward() end, "one-element tensor")
end)

T.case("no_grad records nothing and restores the mode", function()
  local x = sr.tensor({1, 2}, {requires_grad = true})
  local y = sr.no_grad(function() return x * 2 end)
  T.eq(y.requires_grad, false)
  T.eq(sr.is_grad_enabled(), true)
  pcall(sr.no_grad, function() error("boom") end)
  T.eq(sr.is_grad_enabled(), true, "mode restored after an error")
  local z = x * 2
  T.eq(z.requires_grad, true); T.eq(z.is_leaf, false); T.eq(z.grad_fn, "mul_scalar")
end)

T.case("detach cuts the graph and shares storage", function()
  local x = sr.tensor({1, 2}, {requires_grad = true})
  local d = (x * 2):detach()
  T.eq(d.requires_grad, false)
  local y = F.sum(x * d)
  y:backward()
  T.close(x.grad, {2, 4})
  local e = x:detach()
  sr.no_grad(function() e:fill_(5) end)
  T.close(x, {5, 5}, 0, "detach shares storage")
end)

T.case("custom Lua autograd function", function()
  local calls = 0
  local cube = sr.autograd.Function {
    name = "cube",
    forward = function(ctx, x)
      ctx.x = x
      return F.pow(x, 3)
    end,
    backward = function(ctx, g)
      calls = calls + 1
      return F.mul(g, F.mul(F.square(ctx.x), 3))
    end,
  }
  local x = sr.tensor({1, 2, -1}, {dtype = "float64", requires_grad = true})
  local y = cube(x)
  T.eq(y.grad_fn, "cube")
  F.sum(y):backward()
  T.close(x.grad, {3, 12, 3})
  T.eq(calls, 1)
  local ok, msg = sr.autograd.gradcheck(function(a) return cube(F.tanh(a)) end, {sr.randn(5, {dtype = "float64", requires_grad = true})})
  T.ok(ok, msg)
  -- two inputs, one without grad
  local scale = sr.autograd.Function {
    forward = function(ctx, a, b) ctx.a, ctx.b = a, b; return F.mul(a, b) end,
    backward = function(ctx, g) return F.mul(g, ctx.b), F.mul(g, ctx.a) end,
  }
  local a = sr.tensor({1, 2}, {requires_grad = true})
  local b = sr.tensor({3, 4})
  F.sum(scale(a, b)):backward()
  T.close(a.grad, {3, 4})
end)

T.case("second backward through a freed graph is an error", function()
  local x = sr.tensor({1.0}, {requires_grad = true})
  local y = F.exp(x) * 2
  y:backward()
  T.raises(function() y:backward() end, "second time")
end)

T.case("in-place change of a saved tensor is detected", function()
  local x = sr.tensor({1, 2}, {requires_grad = true})
  local h = x * 1
  local y = F.sum(F.log(h))      -- saves h
  sr.no_grad(function() h:fill_(1) end)
  T.raises(function() y:backward() end, "modified in place")
  -- tanh, sigmoid and exp save their output instead: changing it is caught too
  for _, f in ipairs {"tanh", "sigmoid", "exp"} do
    local e = F[f](x * 1)
    local z = F.sum(e)
    sr.no_grad(function() e:fill_(0) end)
    T.raises(function() z:backward() end, "modified in place")
  end
end)

T.case("a learned scalar's gradient is one dot, not an [N, C] product", function()
  -- x <- l * x (records 9-11's lambdas and skip weights): the scalar's gradient sum(dy * x)
  -- comes from the dot kernel: the backward allocates no [N, C] buffer (the product dy * x was one)
  local x, w = sr.randn({64, 512}), sr.randn({64, 512})
  for _, shape in ipairs {{}, {1}, {1, 1}} do
    local l = sr.full(shape, 0.5):requires_grad_()
    local y = F.mul(l, x)
    collectgarbage()
    sr.reset_peak_memory()
    local m0 = sr.memory().current
    y:backward(w)
    local peak = sr.memory().peak - m0
    T.ok(peak <= 4096, "backward peak " .. peak .. " bytes for a scalar of shape {" .. table.concat(shape, ",") .. "}")
    T.eq(#l.grad.shape, #shape)
    T.close(l.grad:reshape(-1), {F.sum(F.mul(x, w)):item()}, 1e-5)
  end
  -- bf16: the dot accumulates in f32 and rounds once to the scalar's dtype
  local lb = sr.full({}, 1, {dtype = "bfloat16"}):requires_grad_()
  local xb, wb = x:bf16(), w:bf16()
  F.sum(F.mul(F.mul(lb, xb), wb)):backward()
  T.close(lb.grad:float(), F.sum(F.mul(xb:double(), wb:double())):item(), 1e-2)
end)

T.case("tanh, sigmoid and exp keep their output, not their input; chains reuse the gradient", function()
  -- softcap as the records write it: cap * tanh(z / cap); the node of tanh holds y, so z / cap
  -- is free once Lua lets go of it, and the backward of the chain writes each gradient over the
  -- previous one (one [N, V] gradient buffer at a time)
  local z = sr.randn({64, 512}, {requires_grad = true})
  local function loss()
    return F.sum(F.mul(F.tanh(F.mul(z, 1 / 30)), 30))
  end
  collectgarbage()
  local base = sr.memory().current
  local l = loss()
  collectgarbage()
  local held = sr.memory().current - base   -- y (tanh's output) and the loss
  T.ok(held <= 64 * 512 * 4 + 64, "forward keeps one [N, V] tensor, held " .. held .. " bytes")
  sr.reset_peak_memory()
  local peak0 = sr.memory().current
  l:backward()
  local peak = sr.memory().peak - peak0
  -- one gradient buffer, written over by tanh's and the scale's backward, then adopted as z.grad
  -- (without the reuse: three)
  T.ok(peak <= 64 * 512 * 4 + 4096, "backward peak " .. peak .. " bytes")
  local t = F.tanh(F.mul(z, 1 / 30)):detach()
  T.close(z.grad, F.sub(1, F.square(t)), 1e-6)
  for _, f in ipairs {"tanh", "sigmoid", "exp"} do
    local x = sr.randn({5, 3}, {dtype = "float64", requires_grad = true})
    F.sum(F.mul(F[f](x), x)):backward()   -- d/dx (f(x) x) = f'(x) x + f(x)
    local y = F[f](x):detach()
    local d = f == "tanh" and F.sub(1, F.square(y)) or f == "sigmoid" and F.mul(y, F.sub(1, y)) or y
    T.close(x.grad, F.add(F.mul(d, x:detach()), y), 1e-12)
  end
end)

T.case("in-place update of a leaf needs no_grad", function()
  local w = sr.tensor({1, 2}, {requires_grad = true})
  T.raises(function() w:add_(1) end, "no_grad")
  sr.no_grad(function() w:add_(sr.tensor({1, 1}), 0.5) end)
  T.close(w, {1.5, 2.5})
end)

T.case("gradients of a bf16 chain come back in the leaf dtype", function()
  local w = sr.tensor({1, 2, 3}, {requires_grad = true})
  local y = F.sum(F.square(w:bf16()):float())
  y:backward()
  T.eq(w.grad.dtype, "float32")
  T.close(w.grad, {2, 4, 6}, 1e-2)
end)

T.case("add, sub and scalar multiply keep no input alive for the backward", function()
  local x = sr.randn(256, 256)
  x.requires_grad = true
  collectgarbage()
  local base = sr.memory().current
  local h = x * 0.5                  -- 256 KB; only its own Lua value refers to it
  local y = F.sum((h + h) - h * 2)   -- the add, the sub and the scalar multiply save nothing
  h = nil
  collectgarbage()
  T.ok(sr.memory().current - base < 4096, ("%d bytes still alive after the forward"):format(sr.memory().current - base))
  y:backward()
  T.close(F.sum(F.abs(x.grad)), {0}, 0, "d/dx (0.5x + 0.5x - x) = 0")
end)

-- a tiny language-model head: h [N, C] -> logits [N, V] -> mean cross-entropy
local function lm_head(N, C, V, opts)
  sr.manual_seed(7)
  local h0, w = sr.randn(N, C), sr.randn(V, C) * 0.1
  h0.requires_grad, w.requires_grad = true, true
  local t = sr.randint(0, V, {N})
  return h0, w, function() return F.linear(h0 * 1, w) end, t
end

T.case("cross_entropy writes the gradient over logits only when nothing else holds them", function()
  local N, C, V = 64, 8, 4096                      -- logits 1 MB
  local h0, w, logits_of, t = lm_head(N, C, V)
  -- the caller keeps the logits: they are left as they were
  local logits = logits_of()
  local keep = logits:tolist()
  F.cross_entropy(logits, t):backward()
  T.close(logits, keep, 0, "logits untouched while the caller holds them")
  local gh, gw = h0.grad:tolist(), w.grad:tolist()
  h0.grad, w.grad = nil, nil
  -- the caller drops them: the backward makes no second [N, V] buffer, same gradients
  local loss = F.cross_entropy(logits_of(), t)
  collectgarbage()
  sr.reset_peak_memory()
  local before = sr.memory().current
  loss:backward()
  local grew = sr.memory().peak - before
  T.ok(grew < N * V * 4 / 2, ("backward allocated %d bytes at its peak (logits are %d)"):format(grew, N * V * 4))
  T.close(h0.grad, gh, 1e-6)
  T.close(w.grad, gw, 1e-6)
end)

T.case("cross_entropy inplace: loss and gradient in the forward, over the logits", function()
  local N, C, V = 32, 8, 512
  local h0, w, logits_of, t = lm_head(N, C, V)
  t:narrow(1, 1, 3):fill_(-1)                      -- ignored rows
  for _, red in ipairs {"mean", "sum"} do
    for _, up in ipairs {1, 3} do
      h0.grad, w.grad = nil, nil
      local ref = F.cross_entropy(logits_of(), t, {ignore_index = -1, reduction = red})
      ;(ref * up):backward()
      local gh, gw = h0.grad:tolist(), w.grad:tolist()
      h0.grad, w.grad = nil, nil
      local loss = F.cross_entropy(logits_of(), t, {ignore_index = -1, reduction = red, inplace = true})
      T.close(loss, {ref:item()}, 1e-6, "same loss " .. red)
      if up == 1 then loss:backward() else (loss * up):backward() end
      T.close(h0.grad, gh, 1e-5, ("h grad %s x%d"):format(red, up))
      T.close(w.grad, gw, 1e-5, ("w grad %s x%d"):format(red, up))
    end
  end
  -- without recording it is the plain loss and leaves the logits alone
  local l = sr.no_grad(logits_of)
  local keep = l:tolist()
  sr.no_grad(function() return F.cross_entropy(l, t, {ignore_index = -1, inplace = true}) end)
  T.close(l, keep, 0)
  -- a node that saved the logits fails loudly; a leaf and reduction "none" are refused
  local lg = logits_of()
  local sq = F.sum(F.mul(lg, lg))
  local ce = F.cross_entropy(lg, t, {ignore_index = -1, inplace = true})
  T.raises(function() (sq + ce):backward() end, "modified in place")
  T.raises(function() F.cross_entropy(w, sr.randint(0, C, {V}), {inplace = true}) end, "leaf")
  T.raises(function() F.cross_entropy(logits_of(), t, {reduction = "none", inplace = true}) end, "inplace needs")
end)

T.case("cross_entropy inplace: an upstream gradient is never taken for the implicit 1", function()
  -- backward() compares a rule's upstream gradient with its seed by address; a seed freed midway
  -- let a later gradient reuse its address, and the cross-entropy then skipped the scale (seen
  -- 9 times in 50 before the seed was held for the whole pass)
  local N, V = 16, 64
  for trial = 1, 50 do
    local l = sr.randn({N, V})
    l.requires_grad = true
    local t, up = sr.randint(0, V, {N}), sr.randn({})
    F.sum(F.mul(F.cross_entropy(l * 1, t), up):float()):backward()
    local want = l.grad:tolist()
    l.grad = nil
    F.sum(F.mul(F.cross_entropy(l * 1, t, {inplace = true}), up):float()):backward()
    T.close(l.grad, want, 1e-5, "trial " .. trial)
  end
end)

T.case("a private gradient becomes the leaf's .grad without a copy", function()
  local w = sr.randn(512, 512)
  w.requires_grad = true
  local loss = F.sum(w * 2)
  collectgarbage()
  sr.reset_peak_memory()
  local before = sr.memory().current
  loss:backward()
  -- the upstream ones expanded and x's gradient; no third buffer for a copy into .grad
  T.ok(sr.memory().peak - before <= 2 * 512 * 512 * 4 + 4096, "two [512, 512] buffers at the peak")
  T.close(w.grad:narrow(1, 1, 1):narrow(2, 1, 3), {{2, 2, 2}})
end)

T.case("memory(): live tensor bytes per device", function()
  collectgarbage()
  local m0 = sr.memory("cpu")
  local x = sr.zeros(1000)
  local m1 = sr.memory("cpu")
  T.eq(m1.current - m0.current, 4000)
  T.eq(m1.allocs - m0.allocs, 1)
  x = nil
  collectgarbage()
  T.eq(sr.memory("cpu").current, m0.current)
  T.ok(sr.memory("cpu").peak >= m1.current)
  sr.reset_peak_memory("cpu")
  T.eq(sr.memory("cpu").peak, sr.memory("cpu").current)
end)

T.case("in-place ops under autograd: recorded where the gradient survives, refused where it would not", function()
  -- x:mul_(3) on a tensor with a history: the out-of-place op's gradient (it was silently 2 here)
  local x = sr.tensor({1, 2}, {requires_grad = true})
  local y = x * 2
  y:mul_(3):add_(1):div_(2)
  F.sum(y):backward()
  T.close(x.grad, {3, 3})
  -- the softcap chain c tanh(z / c) in place equals the out-of-place chain, values and gradients
  sr.manual_seed(3)
  local a = sr.randn(4, 7)
  a.requires_grad = true
  local z1 = a * 1.5
  local r1 = F.mul(F.tanh(z1 / 30), 30)
  F.sum(F.square(r1)):backward()
  local g1 = a.grad:clone()
  a.grad = nil
  local z2 = a * 1.5
  local r2 = z2:div_(30):tanh_() * 30
  T.ok(z2.requires_grad and not z2.is_leaf)
  T.close(r2, r1, 0)
  F.sum(F.square(r2)):backward()
  T.close(a.grad, g1, 1e-6)
  -- exp_ and sigmoid_ (backward from the output), neg_; gradcheck of a chain through them
  T.ok(sr.autograd.gradcheck(function(t) local u = t * 1; u:mul_(2); u:sigmoid_(); local v = t * 0.5; v:neg_():exp_(); return u + v end,
                             {sr.randn(3, 4, {dtype = "float64", requires_grad = true})}))
  -- refused: the backward needs the overwritten input, another tensor shares the storage (a view;
  -- tanh's saved output), a leaf, an unrecorded write with a tensor operand, copy_/fill_ over a history
  local h = a * 1
  T.raises(function() h:square_() end, "square_: its gradient needs the input the in-place op overwrites")
  local v = h:view(28)
  T.raises(function() h:mul_(2) end, "another tensor shares this tensor's storage")
  v = nil
  local t = F.tanh(a * 1)
  T.raises(function() t:mul_(2) end, "another tensor shares this tensor's storage")
  T.raises(function() a:tanh_() end, "in-place update of a leaf that requires grad")
  local k = a * 1
  T.raises(function() k:mul_(sr.ones(4, 7)) end, "mul_: in-place write to a tensor that records gradients")
  T.raises(function() sr.zeros(4, 7):add_(a) end, "add_: the source requires grad")
  T.raises(function() k:copy_(sr.ones(4, 7)) end, "copy_: in-place write to a tensor that records gradients")
  T.raises(function() k:fill_(0) end, "fill_: in-place write")
  k:add_(sr.ones(4, 7))                      -- adding a constant keeps the history right
  F.sum(k):backward()
  -- a tensor saved by another node, then written in place: that node's backward says so
  local s = a * 1
  local w = s * s
  s:mul_(2)
  T.raises(function() F.sum(w):backward() end, "modified in place after the forward")
  -- an expanded layout (elements sharing memory) is never written in place
  T.raises(function() sr.tensor({1, 2}):expand(3, 2):neg_() end, "neg_: more than one element of the written tensor")
  T.raises(function() sr.zeros(1, 2):expand(3, 2):add_(1) end, "add_: more than one element")
  T.raises(function() sr.zeros(1, 2):expand(3, 2):copy_(sr.ones(3, 2)) end, "copy_: more than one element")
  -- without gradients every in-place op runs as before
  sr.no_grad(function() local n = a * 1; n:square_(); n:mul_(sr.ones(4, 7)); n:copy_(a) end)
end)

T.case("a clone's gradient passes as it is (reshape of a transposed tensor: no copy in the backward)", function()
  local a = sr.randn(3, 4, {requires_grad = true})
  local w = sr.randn(4, 3)
  local rows = sr.profile.run(function()
    local y = (a * 2):transpose(1, 2):reshape(12)       -- not a view: a clone, then a view
    F.sum(y * w:reshape(12)):backward()
  end)
  for _, r in ipairs(rows) do T.ok(r.phase ~= "bwd:clone", "no kernel in the clone's backward: " .. r.name) end
  T.close(a.grad, w:transpose(1, 2) * 2, 0)
  -- a cast keeps converting its gradient back
  local b = sr.randn(2, 2, {requires_grad = true})
  F.sum(F.cast(b, "bfloat16")):backward()
  T.eq(b.grad.dtype, "float32")
end)

T.done()
