-- The eval guard (host/lua/lharness.c, switched on by harness/rules.lua around every eval call of
-- a restricted run): each C function that changes the model or keeps state eval could carry
-- between its calls raises "<what> inside eval" while the guard is on, is counted even when the
-- error is caught, and works as usual once the guard is off; and zero_empty, which keeps freed
-- memory's contents from recipes. docs/harness.md "Host-owned measurement" (eval changes nothing).
local T = require "speedrun.testing"
local sr = require "speedrun"
local H = require "speedrun.harness_core"
local cuda = require "speedrun.cuda"
local profile_core = require "speedrun.profile_core"
local kernel_core = require "speedrun.kernel_core"

local t = sr.zeros({4})
local g = cuda.graph(function(x) x:add_(1) end, t)   -- the eager fallback without a GPU
local GUARDED = {
  {"seeding the random generator", function() sr.manual_seed(1) end},
  {"a random draw", function() sr.rand({2}) end},
  {"a random draw", function() sr.randn({2}) end},
  {"a random draw", function() sr.randint(0, 2, {2}) end},
  {"a random draw", function() t:normal_() end},
  {"a random draw", function() t:uniform_() end},
  {"switching a backward fusion", function() sr.grad_fusion("slices", true) end},
  {"setting the thread count", function() sr.set_num_threads(1) end},
  {"reading memory statistics", function() sr.memory() end},
  {"reading memory statistics", function() sr.live_tensors() end},
  {"resetting memory statistics", function() sr.reset_peak_memory() end},
  {"reading memory statistics", function() cuda.memory() end},
  {"reading setup statistics", function() cuda.setup_stats() end},
  {"resetting memory statistics", function() cuda.reset_peak() end},
  {"emptying the memory cache", function() cuda.empty_cache() end},
  {"starting the profiler", function() profile_core.start() end},
  {"reading the profiler", function() profile_core.stop() end},
  {"compiling a kernel", function() kernel_core.compile("extern \"C\" __global__ void k() {}", {}) end},
  {"a CUDA graph replay", function() g:replay() end},
  {"writing a file", function() H.eval_check("writing a file") end},
  {"setting a tensor's grad", function() t.grad = sr.zeros({4}) end},
  {"changing requires_grad", function() t:requires_grad_(true) end},
  {"changing requires_grad", function() t.requires_grad = true end},
}

T.case("every guarded function raises '<what> inside eval' under the guard, counted even if caught", function()
  H.eval_guard(true)
  local errors = {}
  for i, c in ipairs(GUARDED) do
    local ok, err = pcall(c[2])
    errors[i] = {ok, tostring(err)}
  end
  local hits, first = H.eval_guard(false)
  for i, c in ipairs(GUARDED) do
    T.ok(not errors[i][1] and errors[i][2]:find(c[1] .. " inside eval", 1, true), c[1] .. ": " .. errors[i][2])
  end
  T.eq(hits, #GUARDED, "each attempt counted")
  T.eq(first, "seeding the random generator")
end)

T.case("with the guard off the same functions work", function()
  sr.manual_seed(7)
  T.eq(sr.rand({3}).shape[1], 3)
  T.eq(type(sr.memory().peak), "number")
  T.eq(type(cuda.setup_stats()), "table")
  local before = t:tolist()[1]
  g:replay()
  T.eq(t:tolist()[1], before + 1)
  H.eval_check("writing a file")   -- nothing: the guard is off
  t.grad = sr.ones({4})
  T.eq(t.grad:tolist()[1], 1)
  T.eq(t:requires_grad_(true).requires_grad, true)
end)

T.case("under the guard, setting the same grad or requires_grad again is no change and not refused", function()
  local u = sr.zeros({2})
  local gu = sr.ones({2})
  u.grad = gu
  H.eval_guard(true)
  u.grad = gu
  u:requires_grad_(false)
  local hits = H.eval_guard(false)
  T.eq(hits, 0)
end)

T.case("zero_empty (restricted runs): speedrun.empty hands out zeros, never what freed storage held", function()
  H.zero_empty(true)
  local nonzero = 0
  for _ = 1, 20 do
    local a = sr.full({64}, 7, {dtype = "int32"})
    a = nil
    collectgarbage()
    for _, v in ipairs(sr.empty({64}, {dtype = "int32"}):tolist()) do if v ~= 0 then nonzero = nonzero + 1 end end
  end
  H.zero_empty(false)
  T.eq(nonzero, 0, "values other than zero in empty tensors")
end)

T.done()
