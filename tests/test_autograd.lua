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
  local y = F.sum(F.exp(h))      -- saves h
  sr.no_grad(function() h:fill_(0) end)
  T.raises(function() y:backward() end, "modified in place")
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

T.done()
