-- SPEEDRUN_CUDA_MEM_LIMIT caps what the CUDA allocator holds: an allocation over the cap fails
-- with an out-of-memory error (the harness's GPU memory limit), one under it succeeds; a CUDA
-- graph's capture is not refused for blocks the ordinary pool holds free (it gives them back);
-- with lending (the default; SR_GRAPH_LEND=0 off) eager work beside a replayed graph borrows the graph's free memory when the
-- cap leaves no other, and the graph refuses to replay until that tensor is gone.
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

-- a script run by a speedrun of its own under env ("" or "NAME=value ..."): its output and exit code
local function run_script(path, env, args)
  local p = io.popen(("%s '%s' run '%s' %s 2>&1; echo rc=$?"):format(env, arg[-1], path, args or ""))
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end
local function cap(bytes) return ("SPEEDRUN_CUDA_MEM_LIMIT=%d"):format(bytes) end
local function run(limit, n) return run_script(script, cap(limit), tostring(n)) end

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

-- a step that makes a 32 MiB tensor, run once eagerly (its block then cached free in the ordinary
-- pool), then captured under a 48 MiB cap: the capture's pool needs 32 MiB of its own, which fits
-- only when the cached block went back first (records 19-20 at full scale: 61 GB cached, 2026-12-06)
local CAPTURED = [[
local sr, cuda = speedrun, speedrun.cuda
local function step() return sr.F.sum(sr.zeros(8 << 20, {device = "cuda"})) end
step()
collectgarbage(); collectgarbage()
local g = cuda.graph(step)
print("captured", g.captured, g.reason)
print("replay", g:replay():item())
]]
local capture_script = tmp .. "/memlimit_capture.lua"
f = assert(io.open(capture_script, "w"))
f:write(CAPTURED)
f:close()

T.case("a capture under the cap while the ordinary pool holds a free block: captured", function()
  local out = run_script(capture_script, cap(48 << 20))
  T.ok(out:find("captured\ttrue", 1, true), out)
  T.ok(out:find("replay\t0", 1, true), out)
  T.ok(out:find("rc=0", 1, true), out)
end)

-- with room for the logged step besides, a capture keeps the ordinary pool's cached blocks (a proxy
-- run's capture gave ~330 back, 15-20 ms of cudaFree on the warm-up's clock, and allocated them
-- again in the next eager step); without a log (the case above) or without room it gives them back
local keep_script = tmp .. "/memlimit_keep.lua"
f = assert(io.open(keep_script, "w"))
f:write([[
local sr, cuda = speedrun, speedrun.cuda
local function step() return sr.F.sum(sr.zeros(8 << 20, {device = "cuda"})) end
step()
local junk = sr.zeros(16 << 20, {device = "cuda"})   -- 64 MiB no step uses, then cached free
junk = nil
collectgarbage(); collectgarbage()
cuda.log_allocs(true); local l = step(); cuda.log_allocs(false)
l = nil
collectgarbage(); collectgarbage()
local s0, r0 = cuda.setup_stats(), cuda.memory().reserved
local g = cuda.graph(step)
local s1, r1 = cuda.setup_stats(), cuda.memory().reserved
print("captured", g.captured, g.reason)
print("frees", s1.driver_frees - s0.driver_frees)
print("kept", r1 >= r0)
print("replay", g:replay():item())
]])
f:close()

T.case("a capture with room for its logged step keeps the ordinary pool's cache", function()
  local out = run_script(keep_script, "")
  T.ok(out:find("captured\ttrue", 1, true) and out:find("replay\t0", 1, true) and out:find("rc=0", 1, true), out)
  T.ok(out:find("frees\t0\n", 1, true) and out:find("kept\ttrue", 1, true), "nothing given back: " .. out)
  -- under a cap with no room for the step besides what the pool holds: the cache goes back first
  out = run_script(keep_script, cap(112 << 20))
  T.ok(out:find("captured\ttrue", 1, true) and out:find("rc=0", 1, true), out)
  T.ok(not out:find("frees\t0\n", 1, true), "the cached blocks were given back: " .. out)
end)

-- lending (the default, backend.c): a graph whose 32 MiB temporary fills a 48 MiB cap, replayed
-- once (the capture case's script); an eager 32 MiB tensor beside it has no room but the graph's free block
local lend_script = tmp .. "/memlimit_lend.lua"
f = assert(io.open(lend_script, "w"))
f:write(CAPTURED .. [[
collectgarbage(); collectgarbage()   -- the capture's temporary given back to the graph's pool
local ok, e = pcall(sr.ones, 8 << 20, {device = "cuda"})
print("eager", ok, ok and e:sum():item() or tostring(e):match("^[^\n]*"))
print("lent", g:lent())
local rok, rerr = pcall(g.replay, g)
print("replay with it", rok, not rok and tostring(rerr):match("^[^\n]*") or "")
e = nil
collectgarbage(); collectgarbage()
print("lent after", g:lent())
print("replay after", g:replay():item())
]])
f:close()

T.case("lending: eager work beside a replayed graph borrows its free memory; no replay while it is held", function()
  local out = run_script(lend_script, cap(48 << 20))
  T.ok(out:find("captured\ttrue", 1, true) and out:find("replay\t0", 1, true), out)
  T.ok(out:find("eager\ttrue\t8388608", 1, true), "the eager tensor made in the graph's memory, its values right: " .. out)
  T.ok(out:find("lent\t1\n", 1, true), out)
  T.ok(out:find("replay with it\tfalse\tcuda graph: 1 block(s) of its memory lent", 1, true), "refused: " .. out)
  T.ok(out:find("lent after\t0", 1, true) and out:find("replay after\t0", 1, true) and out:find("rc=0", 1, true),
       "collected: replayed, its own result again: " .. out)
  -- without lending (SR_GRAPH_LEND=0) the eager tensor finds no room
  out = run_script(lend_script, cap(48 << 20) .. " SR_GRAPH_LEND=0")
  T.ok(out:find("eager\tfalse", 1, true) and out:find("out of memory", 1, true), out)
end)

T.done()
