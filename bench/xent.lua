-- xent.lua: F.cross_entropy at the records' lm_head shapes against the bytes it must move
-- (kernels/softmax_xent.cu). Logits [N, V] (default 32768 x 50257 bf16: record 1's micro-batch of
-- 32 x 1024 tokens, the unpadded GPT-2 vocabulary), random targets, 3% of them ignore_index.
-- Four cases, each timed on the wall clock (synchronised, every launch of the case included) and
-- per kernel under the profiler (speedrun.profile), each kernel's GB/s over the bytes it must move:
--   loss only        no gradient: the logits read once                           N V e
--   inplace          F.cross_entropy(l, t, {inplace = true}); loss:backward(): the
--                    forward writes the gradient over the logits (read + write)   2 N V e
--   inplace, 1/16    the same with (loss / 16):backward() (micro-batches): the backward scales the
--                    gradient in place (elementwise.cu's binary mul; read + write) 2 N V e more
--   not inplace      forward (read), cross_entropy_backward (read + write a new buffer) 3 N V e
-- where e is the logits' element size. The logits of the inplace cases are a view of a leaf made
-- by a custom function that launches nothing and drops the gradient (a non-leaf, as the recipes'
-- logits out of the lm_head are, with no accumulation into a leaf's grad), so the forward
-- overwrites the leaf's values with the gradient each iteration: the timing does not depend on
-- the values. The PyTorch
-- anchor of the same cases: bench/xent_anchor.py. SR_XENT_V2=1 times the previous kernels (A/B).
--   speedrun run bench/xent.lua [N] [V] [bfloat16|float32] [iters] [peak GB/s, default 4800]
-- On a machine without a GPU it runs once on the CPU at a small shape (a check of the script).
local sr = speedrun
local F = sr.F
local profile = require "speedrun.profile"
local autograd = require "speedrun.autograd"

local gpu = sr.cuda.available()
local dev = gpu and "cuda" or "cpu"
local N = tonumber(arg and arg[1]) or (gpu and 32768 or 64)
local V = tonumber(arg and arg[2]) or (gpu and 50257 or 1001)
local dtype = arg and arg[3] or "bfloat16"
local iters = tonumber(arg and arg[4]) or (gpu and 20 or 2)
local peak = tonumber(arg and arg[5]) or 4800
local esz = dtype == "float32" and 4 or 2
local nve = N * V * esz
sr.manual_seed(1)

local function sync() if gpu then sr.cuda.synchronize() end end

local targets = sr.randint(0, V, {N}, {device = dev})
local ignored = sr.randint(0, 100, {N}, {device = dev})
targets = F.where(F.lt(ignored, 3), sr.full({N}, -100, {device = dev, dtype = "int32"}), targets)

print(("cross_entropy [%d, %d] %s on %s, %d iterations; N V e = %.3f GB; peak %d GB/s%s"):format(N, V, dtype, dev,
  iters, nve / 1e9, peak, os.getenv("SR_XENT_V2") == "1" and "; SR_XENT_V2=1 (kernel 2)" or ""))

local opname = profile.op_name

local summary = {}
-- runs step() iters times on the wall clock, then iters times under the profiler; bytes[op name
-- .. " " .. phase] = what that kernel must move per call (the others are printed without GB/s)
local function case(name, step, bytes, ideal)
  local ms, rows = profile.time(step, iters, sync)
  collectgarbage()
  print(("\n%-28s %9.3f ms a step (wall clock), %7.1f GB/s over the ideal %.2f GB"):format(name, ms,
    ideal / (ms * 1e-3) / 1e9, ideal / 1e9))
  local kms = 0
  for _, r in ipairs(rows) do
    local per = r.ms / r.calls
    kms = kms + r.ms / iters
    local b = bytes[opname(r) .. " " .. r.phase]
    local gbs = b and b / (per * 1e-3) / 1e9
    print(("  %-26s %-22s %-5s %4d calls %9.3f ms each%s"):format(opname(r), r.phase, r.dtype, r.calls, per,
      gbs and ("  %7.1f GB/s (%.0f%% of %d)"):format(gbs, 100 * gbs / peak, peak) or ""))
  end
  print(("  %-26s %9.3f ms a step in kernels"):format("total", kms))
  summary[#summary + 1] = ("| %s | %.3f | %.3f | %.1f |"):format(name, ms, kms, ideal / (kms * 1e-3) / 1e9)
end

-- loss only
local x = sr.randn(N, V, {device = dev}):to(dtype)
case("loss only", function()
  return sr.no_grad(function() return F.cross_entropy(x, targets) end)
end, {["cross_entropy fwd"] = nve}, nve)

-- inplace: the logits a non-leaf view of a leaf, their gradient dropped
local sink = autograd.Function {name = "sink", forward = function(_, t) return t:view(N, V) end,
                                backward = function() return nil end}
local w = x:detach():requires_grad_(true)
local function inplace_step(scale)
  return function()
    local loss = F.cross_entropy(sink(w), targets, {inplace = true})
    if scale then loss = loss / scale end
    loss:backward()
  end
end
case("inplace", inplace_step(nil), {["cross_entropy fwd"] = 2 * nve}, 2 * nve)
-- loss / 16: the gradient's scale (a host constant: autograd.h's scale fusion) applied before the
-- sink, which is no linear (with SPEEDRUN_GRAD_SCALE=0, a device tensor's mul in the loss's backward)
case("inplace, loss / 16", inplace_step(16), {["cross_entropy fwd"] = 2 * nve, ["binary.mul bwd:cross_entropy"] = 2 * nve,
                                               ["unary.mul_scalar bwd:sink"] = 2 * nve}, 4 * nve)
w = nil
collectgarbage()

-- not inplace: the gradient into a new buffer by cross_entropy_backward
local xl = sr.randn(N, V, {device = dev}):to(dtype):requires_grad_(true)
case("not inplace", function()
  local loss = F.cross_entropy(xl, targets)
  loss:backward()
  xl.grad = nil
end, {["cross_entropy fwd"] = nve, ["cross_entropy_backward bwd:cross_entropy"] = 2 * nve}, 3 * nve)

print(("\n| case [%d, %d] %s | ms a step (wall) | ms in kernels | GB/s over the ideal bytes |\n|---|---|---|---|"):format(N,
  V, dtype))
for _, s in ipairs(summary) do print(s) end
