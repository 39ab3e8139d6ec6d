-- test_gpu_profile.lua: speedrun.profile on cuda: CUDA-event times per key, a profile longer than
-- the event pool (read and reused mid-profile), a fused group timed as one "fused" row (the event
-- pairs of the launches it holds reused, not counted), and neither a graph's capture nor its
-- replays profiled. Skips (exit 77) without a usable GPU.
local sr = speedrun
local T = require "speedrun.testing"
local cuda = require "speedrun.cuda"
local F = sr.F
local profile = sr.profile

local ok, why = cuda.available()
if not ok then T.skip("no usable GPU: " .. tostring(why)) end

local function find(rows, name, sub, dtype, phase)
  for _, r in ipairs(rows) do
    if r.name == name and r.sub == sub and r.dtype == dtype and r.phase == phase then return r end
  end
end

T.case("matmul and its backward on cuda: keys, calls, event times", function()
  local a = sr.randn(256, 512, {device = "cuda", requires_grad = true})
  local b = sr.randn(512, 128, {device = "cuda", requires_grad = true})
  F.matmul(a, b)                                   -- cuBLASLt plans made before the profile
  local rows = profile.run(function() F.sum(F.matmul(a, b)):backward() end)
  local fwd, bwd = find(rows, "gemm", nil, "float32", "fwd"), find(rows, "gemm", nil, "float32", "bwd:matmul")
  T.ok(fwd and bwd, "gemm rows")
  T.eq(fwd.calls, 1)
  T.eq(bwd.calls, 2)
  T.eq(bwd.numel, 256 * 512)
  local total = 0
  for _, r in ipairs(rows) do
    T.ok(r.ms >= 0, "ms >= 0")
    total = total + r.ms
  end
  T.ok(fwd.ms > 0 and total > 0, "event times")
end)

T.case("more calls than the event pool holds: every call counted and timed", function()
  local x = sr.randn(1024, {device = "cuda"})
  local n = 20000                                  -- the pool holds 16384 pairs
  local rows = profile.run(function()
    for _ = 1, n do x:add_(1) end
  end)
  T.eq(#rows, 1, "one key")
  T.eq(rows[1].calls, n)
  T.ok(rows[1].ms > 0)
  T.ok(not profile.active())
end)

T.case("a step with the step compiler's plan: each fused group one timed row, held launches uncounted", function()
  local fuse = require "speedrun.fuse"
  local a, x = sr.randn({256, 1024}, {device = "cuda"}):to("bfloat16"), sr.randn({256, 1024}, {device = "cuda"})
  local function step() return {F.exp(x + F.cast(a, "float32")) * 2, F.sum(x)} end
  local plan = T.fuse_plan(step)
  T.eq(plan:prepare(), 0, "the group's kernel builds")
  local label = "cast:float32 -> add:float32 -> exp:float32 -> mul_scalar:float32"
  local n = 3
  local rows = profile.run(function() for _ = 1, n do fuse.run(plan, step) end end)
  T.eq(fuse.last(), 1, "the group ran fused")
  T.eq(#rows, 2, "two keys: the group and the sum")
  local g = find(rows, "fused", label, "float32", "fwd")
  T.ok(g, "the fused row")
  T.eq(g.calls, n)
  T.ok(g.ms > 0, "timed")
  T.eq(find(rows, "reduce", "sum", "float32", "fwd").calls, n)
end)

T.case("a graph's capture and replays are not profiled", function()
  local x = sr.randn(4096, {device = "cuda"})
  local function step() return F.exp(x) end
  step()
  profile.start()
  local g = cuda.graph(step)
  g:replay()
  local rows = profile.stop()
  T.ok(g.captured, "captured: " .. tostring(g.reason))
  T.eq(find(rows, "unary", "exp", "float32", "fwd"), nil, "no exp row")
  g:free()
end)

T.done()
