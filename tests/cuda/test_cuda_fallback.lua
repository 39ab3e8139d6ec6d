-- speedrun.cuda where no GPU is usable (CI): memory statistics answer, synchronize is a no-op,
-- and cuda.graph falls back to eager replays that call the step each time (docs/cuda.md).
local sr = require "speedrun"
local T = require "speedrun.testing"
local cuda = sr.cuda

if sr.cuda_available() then T.skip("a GPU is usable: tests/cuda/test_gpu_cuda.lua covers capture") end

T.case("memory statistics and synchronize without a GPU", function()
  local m = cuda.memory()
  T.eq(type(m), "table")
  cuda.synchronize()
end)

T.case("graph falls back to eager replays", function()
  local calls = 0
  local w = sr.tensor({1, 2, 3})
  local g = cuda.graph(function(x) calls = calls + 1; return x * w end, sr.tensor({2, 2, 2}))
  T.eq(g.captured, false)
  T.ok(type(g.reason) == "string" and #g.reason > 0, "a reason is given")
  local r1 = g:replay()
  T.close(r1, {2, 4, 6})
  sr.no_grad(function() w:fill_(1) end)
  local r2 = g:replay()
  T.close(r2, {2, 2, 2}, 0, "each replay runs the step on the current values")
  T.eq(calls, 2)
end)

T.done()
