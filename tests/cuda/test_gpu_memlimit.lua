-- SPEEDRUN_CUDA_MEM_LIMIT caps what the CUDA allocator holds: an allocation over the cap fails
-- with an out-of-memory error (the harness's GPU memory limit), one under it succeeds.
local sr = require "speedrun"
local T = require "speedrun.testing"

if not sr.cuda_available() then T.skip("no usable GPU") end

local tmp = os.getenv("SPEEDRUN_TEST_TMP") or "/tmp"
os.execute("mkdir -p '" .. tmp .. "'")
local script = tmp .. "/memlimit.lua"
local f = assert(io.open(script, "w"))
f:write([[
local n = tonumber(arg[1])
local t = speedrun.zeros(n, {device = "cuda"})
print("allocated", t:numel())
]])
f:close()

local function run(limit, n)
  local p = io.popen(("SPEEDRUN_CUDA_MEM_LIMIT=%d '%s' run '%s' %d 2>&1; echo rc=$?"):format(limit, arg[-1], script, n))
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

T.case("over the cap: out of memory", function()
  local out, rc = run(8 << 20, 16 << 20)          -- 64 MiB of float32 against an 8 MiB cap
  T.ok(rc ~= 0, out)
  T.ok(out:find("out of memory", 1, true) and out:find("SPEEDRUN_CUDA_MEM_LIMIT", 1, true), out)
end)

T.case("under the cap: fine", function()
  local out, rc = run(64 << 20, 1 << 20)          -- 4 MiB against a 64 MiB cap
  T.eq(rc, 0, out)
  T.ok(out:find("allocated", 1, true), out)
end)

T.done()
