-- bench/loss_head.lua: the records' loss head on one micro-batch, unfused against the step
-- compiler's loss group (issue 20; docs/cuda.md, "The step compiler"): z = x W^T (a bf16 GEMM),
-- the softcap (tanh: records 9-18, 30 tanh(z / 30) in place on the bf16 logits; sigmoid: records
-- 19-21, 30 sigmoid(z_f32 / 7.5) on an f32 copy), F.cross_entropy(..., {inplace = true}), and the
-- backward into W (the softcap's chain, then the two GEMMs' dW). Defaults: the records' micro-batch,
-- N 65536 tokens, C 768, V 50304. With [n] > 1 the loss is divided by n before the backward, as a
-- micro-batch of n is (the loss group then defers its gradient to the backward; docs/cuda.md).
--   speedrun run bench/loss_head.lua [N] [C] [V] [tanh|sigmoid] [iters] [n]
-- Two cases: the step as the recipe writes it (eager, unfused), and the same step with the plan the
-- step compiler makes from two recorded steps (eager, fused: the softcap, the loss and the
-- gradient's chain one kernel). Each: ms a step on the wall clock (synchronised), then every kernel
-- under the profiler, and the time outside the GEMMs (what the fusion changes). The loss and W's
-- gradient of both must agree (printed). PyTorch's anchor on the same shapes, eager and compiled:
-- bench/loss_head_anchor.py. Without a GPU: once on the CPU at a small shape (a check of the script).
local sr = speedrun
local F = sr.F
local fuse = require "speedrun.fuse"
local profile = require "speedrun.profile"
local T = require "speedrun.testing"

local gpu = sr.cuda.available()
local dev = gpu and "cuda" or "cpu"
local N = tonumber(arg and arg[1]) or (gpu and 65536 or 256)
local C = tonumber(arg and arg[2]) or (gpu and 768 or 64)
local V = tonumber(arg and arg[3]) or (gpu and 50304 or 1001)
local cap = arg and arg[4] or "tanh"
local iters = tonumber(arg and arg[5]) or (gpu and 10 or 2)
local nmicro = tonumber(arg and arg[6]) or 1
if cap ~= "tanh" and cap ~= "sigmoid" then error("loss_head.lua: the softcap is tanh or sigmoid, not " .. cap) end
sr.manual_seed(1)

local function sync() if gpu then sr.cuda.synchronize() end end
local softcap = cap == "tanh" and function(z) return z:div_(30):tanh_() * 30 end
                or function(z) return F.cast(z, "float32"):div_(7.5):sigmoid_() * 30 end

local x = sr.randn(N, C, {device = dev}):mul(0.5):to("bfloat16")
local W = sr.randn(V, C, {device = dev}):mul(0.05):to("bfloat16"):requires_grad_(true)
local targets = sr.randint(0, V, {N}, {device = dev})

-- the capped logits go out of scope before the backward, as in the recipes
local function forward() return F.cross_entropy(softcap(F.linear(x, W)), targets, {inplace = true}) end
local function step()
  local loss = forward()
  if nmicro > 1 then loss = loss / nmicro end
  loss:backward()
  local g = W.grad
  W.grad = nil
  return {loss, g}
end

print(("loss head [%d x %d] x [%d x %d]^T bf16, %s softcap, in-place cross-entropy%s, on %s, %d iterations"):format(N,
  C, V, C, cap, nmicro > 1 and (", loss / " .. nmicro) or "", dev, iters))
local plan = T.fuse_plan(step)
if gpu then
  local off, err = plan:prepare()
  if off > 0 then print(("%d groups could not be built (they run unfused): %s"):format(off, err)) end
end
print(plan:dump())

local opname = profile.op_name
local results, summary = {}, {}
local function case(name, run)
  local ms, rows = profile.time(run, iters, sync)
  local gemm, rest = 0, 0
  print(("\n%-8s %9.3f ms a step (wall clock)"):format(name, ms))
  for _, r in ipairs(rows) do
    local per = r.ms / iters
    if r.name == "gemm" then gemm = gemm + per else rest = rest + per end
    print(("  %-60s %-22s %-9s %3d calls %9.3f ms a step"):format(opname(r):sub(1, 60), r.phase, r.dtype,
      r.calls // iters, per))
  end
  print(("  kernels: %.3f ms in GEMMs, %.3f ms in the rest"):format(gemm, rest))
  summary[#summary + 1] = ("| %s | %.3f | %.3f | %.3f |"):format(name, ms, gemm, rest)
  results[name] = run()
end

case("unfused", step)
case("fused", function()
  local r = fuse.run(plan, step)
  local groups, why = fuse.last()
  if why then error("the fused step did not run as planned: " .. why) end
  return r, groups
end)

local u, f = results.unfused, results.fused
local dl = math.abs(u[1]:item() - f[1]:item())
local dg = (u[2]:to("float32") - f[2]:to("float32")):abs():max():item()
print(("\nfused against unfused: loss %.9g vs %.9g (|d| %.3g), W's gradient max |d| %.3g"):format(f[1]:item(),
  u[1]:item(), dl, dg))
print(("\n| loss head [%d, %d, %d], %s softcap%s | ms a step (wall) | ms in GEMMs | ms in the rest |\n|---|---|---|---|"):format(N,
  C, V, cap, nmicro > 1 and (", loss / " .. nmicro) or ""))
for _, s in ipairs(summary) do print(s) end
