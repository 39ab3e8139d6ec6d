-- speedrun.autograd: custom functions written in Lua and gradient checking.
local sr = require "speedrun"
local core = require "speedrun.core"
local F = sr.F

local autograd = {}

-- Function{name=, forward=function(ctx, ...) -> tensor(s), backward=function(ctx, grad_out...)
-- -> one gradient (or nil) per tensor input}. ctx is a table for saving what backward needs.
-- Returns a callable: f(...) runs forward without recording and puts one tape node over it.
function autograd.Function(def)
  assert(type(def.forward) == "function" and type(def.backward) == "function",
         "autograd.Function needs forward and backward functions")
  local name = def.name or "custom"
  return function(...)
    local args = table.pack(...)
    local ctx = {}
    local outs = table.pack(sr.no_grad(def.forward, ctx, ...))
    local inputs, outputs = {}, {}
    for i = 1, args.n do
      if sr.is_tensor(args[i]) then inputs[#inputs + 1] = args[i] end
    end
    for i = 1, outs.n do
      local o = outs[i]
      for _, x in ipairs(inputs) do
        if rawequal(o, x) then o = o:clone() end  -- an input returned as is must not become a non-leaf
      end
      outs[i] = o
      outputs[i] = o
    end
    core.record_custom(function(c, ...) return def.backward(c, ...) end, ctx, inputs, outputs, name)
    return table.unpack(outs, 1, outs.n)
  end
end

-- gradcheck(fn, inputs [, {eps=1e-6, atol=1e-5, rtol=1e-3}]): compares the analytic gradient of
-- sum(fn(inputs) * r) (r a fixed random projection) with central finite differences, in
-- float64 on the CPU. Inputs that require grad are checked. Returns true, or false and a message.
function autograd.gradcheck(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  local xs = {}
  for i, x in ipairs(inputs) do
    if sr.is_tensor(x) and x.dtype ~= "int32" then
      local c = sr.no_grad(function() return x:to("cpu", "float64"):contiguous():clone() end)
      c.requires_grad = x.requires_grad
      xs[i] = c
    else
      xs[i] = x
    end
  end
  local out = fn(table.unpack(xs))
  local r = sr.randn(out.shape, {dtype = "float64"})
  local function objective()
    return sr.no_grad(function() return F.sum(F.mul(fn(table.unpack(xs)), r)):item() end)
  end
  F.sum(F.mul(out, r)):backward()
  for i, x in ipairs(xs) do
    if sr.is_tensor(x) and x.requires_grad then
      local analytic = x.grad and x.grad:tolist() or nil
      local flat = x:view(-1)
      local n = flat:numel()
      local vals = flat:tolist()
      local ana = analytic and x.grad:reshape(-1):tolist() or {}
      for j = 1, n do
        local orig = vals[j]
        sr.no_grad(function() flat:narrow(1, j, 1):fill_(orig + eps) end)
        local fp = objective()
        sr.no_grad(function() flat:narrow(1, j, 1):fill_(orig - eps) end)
        local fm = objective()
        sr.no_grad(function() flat:narrow(1, j, 1):fill_(orig) end)
        local numeric = (fp - fm) / (2 * eps)
        local a = ana[j] or 0.0
        if not (math.abs(a - numeric) <= atol + rtol * math.abs(numeric)) then
          return false, ("gradcheck: input %d element %d: analytic %.10g, numeric %.10g"):format(i, j, a, numeric)
        end
      end
    end
  end
  return true
end

return autograd
