-- speedrun: the Lua face of the engine. The C core (speedrun.core) gives tensors, factories,
-- the differentiable functions F and the tape; this file adds the functions that are
-- compositions of those (lerp, var, norm, stack, split, ...), the tensor methods and operators,
-- and the lazily loaded libraries nn, optim, autograd and gpt.
-- Dimensions are 1-based, as the shape table (t.shape[1] is the first); negative dims count
-- from the end (-1 is the last).
local core = require "speedrun.core"

local M = {}
for k, v in pairs(core) do M[k] = v end
local F = core.F
M.F = F

local is_tensor = core.is_tensor

-- lerp(a, b, w): a + w * (b - a); w a number or a tensor
function F.lerp(a, b, w)
  return F.add(a, F.mul(F.sub(b, a), w))
end

-- var(x [, dim [, {correction=1, keepdim=false}]])
function F.var(x, dim, opts)
  opts = opts or {}
  local correction = opts.correction or 1
  if dim == nil then
    x = x:reshape(-1)
    dim = 1
  end
  local n = x:size(dim)
  local centered = F.sub(x, F.mean(x, dim, true))
  local ss = F.sum(F.square(centered), dim, opts.keepdim)
  return F.div(ss, math.max(n - correction, 0))
end

function F.std(x, dim, opts)
  return F.sqrt(F.var(x, dim, opts))
end

-- norm(x [, dim [, keepdim]]): Frobenius norm of everything, or the 2-norm along dim
function F.norm(x, dim, keepdim)
  if dim == nil then return F.sqrt(F.sumsq(x)) end
  return F.sqrt(F.sumsq(x, dim, keepdim))
end

-- masked_fill(x, mask, value): value where mask is nonzero (an integer value into an int32 x
-- stays int32, as in PyTorch: F.where's scalar rule)
function F.masked_fill(x, mask, value)
  return F.where(mask, value, x)
end

-- argument checks of the functions written here, in the bindings' style
local function argerror(arg, fname, fmt, ...)
  error(string.format("bad argument #%d to '%s' (" .. fmt .. ")", arg, fname, ...), 3)
end
local function check_int(v, arg, fname, what, min)
  if math.type(v) ~= "integer" or v < min then
    argerror(arg, fname, "%s must be an integer >= %d, got %s", what, min, tostring(v))
  end
end

-- stack({tensors}, dim): a new dim
function F.stack(ts, dim)
  dim = dim or 1
  if type(ts) ~= "table" then argerror(1, "stack", "expected a table of tensors, got %s", type(ts)) end
  check_int(dim, 2, "stack", "dim", math.mininteger)
  local us = {}
  for i, t in ipairs(ts) do
    local d = dim < 0 and dim + t:dim() + 2 or dim
    us[i] = t:unsqueeze(d)
  end
  return F.cat(us, dim)
end

-- split(x, size, dim): pieces of `size` along dim (the last may be shorter)
-- (up to core.split_max = 16 pieces: views under one tape node, whose backward writes one
-- gradient tensor; more pieces are narrows, each with a full-size gradient of its own)
function F.split(x, size, dim)
  dim = dim or 1
  check_int(size, 2, "split", "size", 1)
  local n, sizes, start = x:size(dim), {}, 1
  while start <= n do
    local len = math.min(size, n - start + 1)
    sizes[#sizes + 1] = len
    start = start + len
  end
  if #sizes >= 1 and #sizes <= core.split_max then return {F.split_views(x, dim, sizes)} end
  local out
  out, start = {}, 1
  for i, len in ipairs(sizes) do
    out[i] = x:narrow(dim, start, len)
    start = start + len
  end
  return out
end

-- chunk(x, k, dim): k pieces of equal size (the last may be shorter), as torch.chunk
function F.chunk(x, k, dim)
  dim = dim or 1
  check_int(k, 2, "chunk", "k", 1)
  return F.split(x, math.max(1, (x:size(dim) + k - 1) // k), dim)
end

-- clamp(x, min, max): max(min(x, max), min) elementwise, either bound nil (torch.clamp,
-- clamp_min, clamp_max); numbers or tensors. At a value equal to a bound the gradient is split
-- between x and the bound (F.maximum's rule for ties), where torch passes it all to x.
function F.clamp(x, lo, hi)
  if lo == nil and hi == nil then argerror(2, "clamp", "at least one of min and max is required") end
  if lo ~= nil then x = F.maximum(x, lo) end
  if hi ~= nil then x = F.minimum(x, hi) end
  return x
end

-- outer(a, b): the [n, m] products of 1-D a [n] and b [m] (torch.outer)
function F.outer(a, b)
  if not is_tensor(a) or a:dim() ~= 1 then argerror(1, "outer", "expected a 1-D tensor") end
  if not is_tensor(b) or b:dim() ~= 1 then argerror(2, "outer", "expected a 1-D tensor") end
  return F.mul(a:view(a:numel(), 1), b:view(1, b:numel()))
end

-- softcap(x, cap) = cap * tanh(x / cap)
function F.softcap(x, cap)
  return F.mul(F.tanh(F.div(x, cap)), cap)
end

-- tensor methods: every F function taking the tensor first, plus a few aliases
-- (the unary, binary and reduce functions of the kernel registry's lists: core.op_names)
local methods = core.Tensor.methods
for _, list in ipairs {core.op_names.unary, core.op_names.binary, core.op_names.reduce} do
  for _, name in ipairs(list) do methods[name] = F[name] end
end
for _, name in ipairs {
  "gelu", "argmax", "cumsum", "argsort", "clamp", "matmul", "softmax", "log_softmax", "var", "std", "norm", "masked_fill", "lerp",
  "split", "chunk", "softcap",
} do
  methods[name] = F[name]
end
function methods.float(t) return F.cast(t, "float32") end
function methods.double(t) return F.cast(t, "float64") end
function methods.bf16(t) return F.cast(t, "bfloat16") end
function methods.int(t) return F.cast(t, "int32") end
function methods.cuda(t) return t:to("cuda") end
function methods.cpu(t) return t:to("cpu") end
function methods.T(t) return t:transpose() end
function methods.slice(t, dim, first, last) return t:narrow(dim, first, last - first + 1) end
-- lerp_(e, w): self <- self + w * (e - self) in place, w a number (torch's Tensor.lerp_; Muon's
-- momentum EMA buf:lerp_(g, 1 - momentum)); in place as mul_ and add_ are: while gradients are
-- recorded, self's part is, and an e that requires grad is refused (docs/engine.md)
function methods.lerp_(t, e, w)
  if type(w) ~= "number" then argerror(3, "lerp_", "weight must be a number, got %s", type(w)) end
  return t:mul_(1 - w):add_(e, w)
end
-- select(dim, i): the i-th (1-based) slice along dim, without that dim (torch's x.select(dim, i-1),
-- x[i-1] for dim 1): lambdas:select(1, 1) is a 0-d view whose gradient flows back into lambdas
function methods.select(t, dim, i) return t:narrow(dim, i, 1):squeeze(dim) end

local mt = core.Tensor
mt.__add = F.add
mt.__sub = F.sub
mt.__mul = F.mul
mt.__div = F.div
mt.__pow = F.pow
mt.__unm = F.neg

-- libraries, loaded on first use: speedrun.nn, speedrun.optim, speedrun.autograd, speedrun.gpt,
-- speedrun.kernel, speedrun.cuda (memory statistics, synchronize, CUDA graphs: host/lua/lcuda.c),
-- speedrun.profile (per-op time of the kernels: lua/speedrun/profile.lua), speedrun.attention
-- (block masks for F.flex_attention: lua/speedrun/attention.lua)
setmetatable(M, {
  __index = function(t, k)
    if k == "nn" or k == "optim" or k == "autograd" or k == "gpt" or k == "kernel" or k == "cuda"
        or k == "profile" or k == "attention" then
      local lib = require("speedrun." .. k)
      rawset(t, k, lib)
      return lib
    end
  end,
})

-- linspace(start, stop, steps [, opts]): steps evenly spaced values from start to stop, both
-- included (torch.linspace): start + i (stop - start) / (steps - 1), float32 unless opts.dtype
-- says otherwise; opts as sr.arange's (dtype, device)
function M.linspace(start, stop, steps, opts)
  if type(start) ~= "number" then argerror(1, "linspace", "start must be a number") end
  if type(stop) ~= "number" then argerror(2, "linspace", "stop must be a number") end
  check_int(steps, 3, "linspace", "steps", 0)
  local o = {dtype = "float32"}
  for k, v in pairs(opts or {}) do o[k] = v end
  local step = steps > 1 and (stop - start) / (steps - 1) or 0
  if step == 0 then return core.full({steps}, start, o) end   -- no value, one value, or start == stop
  return core.arange(start, start + (steps - 0.5) * step, step, o)
end

M.is_tensor = is_tensor
return M
