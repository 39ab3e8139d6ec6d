-- The engine switches a timed run does not inherit (harness/supervise.lua): the variables that
-- change which kernels run or how (SR_* A/B and opt-in kernels, TF32, fusion, graphs, allocator,
-- caches; OpenMP's settings; the CUDA driver's and cuBLAS's: synchronous launches, module loading,
-- TF32 forced) are removed from the child's environment of a restricted run (score) or a cold-cache one
-- (calibrate, the tuner's confirmations), so its time does not depend on the shell it was started
-- from; every variable the engine's sources read is either such a switch or named configuration;
-- every switch is in docs/cuda.md's table of engine switches (and no other name); and end to end, a
-- restricted train's results.json names what its child lost.
local T = require "speedrun.testing"
local json = require "speedrun.json"
local process = require "speedrun.process"
local sup = require "speedrun.harness.supervise"

local sh, read, write = T.shell_quote, T.read, T.write
local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/engine_env"
os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp))

T.case("child_env: a timed run's child loses the switches, keeps configuration; other runs inherit", function()
  local names = {"PATH", "SR_FLEX_WGMMA", "SPEEDRUN_TF32", "SPEEDRUN_HOME", "SR_ROTARY_V1", "SPEEDRUN_FUSE", "HOME",
                 "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMPI_X", "CUDA_LAUNCH_BLOCKING", "NVIDIA_TF32_OVERRIDE",
                 "CUDA_MODULE_LOADING", "CUDA_VISIBLE_DEVICES", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"}
  for _, job in ipairs {{restricted = true}, {cold_caches = true}} do
    local env, removed = sup.child_env(job, {gpu_mem_limit = 1024}, names)
    T.eq(table.concat(removed, ","), "CUDA_LAUNCH_BLOCKING,CUDA_MODULE_LOADING,CUDA_MPS_ACTIVE_THREAD_PERCENTAGE,"
         .. "GOMP_SPINCOUNT,NVIDIA_TF32_OVERRIDE,OMP_NUM_THREADS,SPEEDRUN_FUSE,SPEEDRUN_TF32,SR_FLEX_WGMMA,SR_ROTARY_V1",
         "the engine's switches and the driver's (synchronous launches, module loading, TF32 forced)")
    T.eq(env.CUDA_VISIBLE_DEVICES, nil, "which device is configuration: kept")
    for _, n in ipairs(removed) do T.eq(env[n], false, n .. " removed") end
    T.eq(env.SPEEDRUN_HOME, nil, "configuration kept")
    T.eq(env.PATH, nil)
    T.eq(env.SPEEDRUN_HARNESS_CHILD, "1")
    T.eq(env.SPEEDRUN_CUDA_MEM_LIMIT, "1024", "the harness's own settings stay")
  end
  local env, removed = sup.child_env({}, {}, names)
  T.eq(#removed, 0, "a plain train run inherits the shell's switches (A/B experiments)")
  T.eq(env.SR_FLEX_WGMMA, nil)
end)

T.case("every environment variable the engine reads is a switch or named configuration", function()
  local seen, unknown = {}, {}
  local function scan(cmd)   -- each quoted name the command prints, classified once
    local f = assert(io.popen("cd .. && " .. cmd))
    for line in f:lines() do
      local n = line:match('"([%w_]+)"')
      if n and not seen[n] then
        seen[n] = true
        if not (sup.is_switch(n) or sup.ENGINE_CONFIG[n]) then unknown[#unknown + 1] = n end
      end
    end
    f:close()
  end
  -- getenv("NAME") and the kernels' A/B switches, sr_env_is(&cache, "NAME", value) (kernels/common.cuh)
  scan("grep -rhoE '(getenv\\(|sr_env_is\\(&[a-z0-9_]+, )\"(SR|SPEEDRUN)_[A-Z0-9_]+\"' host kernels lua")
  -- names read through a table (core/autograd.c: the gradient routing's switches, fusion_env)
  scan("grep -hoE '\"SPEEDRUN_GRAD_[A-Z0-9_]+\"' host/core/autograd.c")
  T.ok(seen.SR_FLEX_WGMMA and seen.SPEEDRUN_TF32 and seen.SPEEDRUN_HOME and seen.SR_FLEX_BWD_NS and seen.SPEEDRUN_GRAD_ACCUM,
       "the scan finds the engine's variables")
  T.eq(table.concat(unknown, ", "), "", "unclassified: add each to supervise.ENGINE_SWITCHES or ENGINE_CONFIG")
  for n in pairs(sup.ENGINE_SWITCHES) do T.ok(not sup.ENGINE_CONFIG[n], n .. " is both") end
  -- docs/cuda.md's table of engine switches names each switch the sources read, and no other
  local doc = read("../docs/cuda.md") or ""
  local section = doc:match("\n## Engine switches\n(.-)\n## ") or ""
  local listed = {}
  for row in section:gmatch("\n(| `[^\n]*)") do
    for n in (row:match("^| ([^|]*) |") or ""):gmatch("`([A-Z0-9_]+)`") do
      if n:match("^SR_") or n:match("^SPEEDRUN_") then listed[n] = true end
    end
  end
  local missing, stale = {}, {}
  for n in pairs(seen) do if sup.is_switch(n) and not listed[n] then missing[#missing + 1] = n end end
  for n in pairs(listed) do if not seen[n] then stale[#stale + 1] = n end end
  table.sort(missing) table.sort(stale)
  T.ok(next(listed) ~= nil, "docs/cuda.md has its table of engine switches")
  T.eq(table.concat(missing, ", "), "", "switches docs/cuda.md's table does not name")
  T.eq(table.concat(stale, ", "), "", "docs/cuda.md's table names switches the engine does not read")
end)

T.case("spawn's env: false removes an inherited variable", function()
  local script = tmp .. "/spawn_env.lua"
  write(script, [[
local process = require "speedrun.process"
local p = process.spawn {argv = {"/usr/bin/env"}, env = {SR_ENGINE_TEST = false, SR_KEPT = "2"}}
local out = {}
while p:open() do
  for _, c in ipairs(p:read(0.2)) do if c[1] == "stdout" then out[#out + 1] = c[2] end end
end
local text = table.concat(out)
print((text:find("SR_ENGINE_TEST=", 1, true) and "inherited" or "removed") .. " " .. (text:find("SR_KEPT=2", 1, true) and "set" or "unset"))
]])
  local f = assert(io.popen("SR_ENGINE_TEST=1 " .. sh(exe) .. " run " .. sh(script) .. " 2>&1"))
  local out = f:read("a")
  f:close()
  T.ok(out:find("removed set", 1, true), out)
end)

T.case("end to end: a restricted train's child loses the shell's switches, and results.json names them", function()
  local data = require "speedrun.data"
  assert(data.write_shard(tmp .. "/syn_train_000001.bin", T.token_stream(20000, 1)))
  assert(data.write_shard(tmp .. "/syn_val_000000.bin", T.token_stream(4000, 2)))
  local ws = tmp .. "/ws"
  os.execute("mkdir -p " .. sh(ws))
  write(ws .. "/recipe.lua", read("harness/recipes/good.lua"))
  local function train(extra, out)
    local cmd = "SR_ENGINE_TEST=1 SPEEDRUN_TF32=1 " .. sh(exe) .. " train " .. sh(ws .. "/recipe.lua") ..
      " --scale micro --quiet --device cpu --threads 1 --train-files " .. sh(tmp .. "/syn_train_*.bin") ..
      " --val-files " .. sh(tmp .. "/syn_val_*.bin") .. " --out " .. sh(out) .. extra .. " > " .. sh(tmp .. "/out.txt") .. " 2>&1"
    os.execute(cmd)
    local s = read(out .. "/results.json")
    T.ok(s, "no results.json: " .. (read(tmp .. "/out.txt") or ""))
    return json.decode(s)
  end
  local r = train(" --restricted", tmp .. "/run-restricted")
  T.eq(r.status, "valid", read(tmp .. "/out.txt"))
  T.eq(table.concat(r.engine_switches_removed or {}, ","), "SPEEDRUN_TF32,SR_ENGINE_TEST")
  local u = train("", tmp .. "/run-plain")
  T.eq(u.engine_switches_removed, nil, "a plain train run keeps them")
end)

T.done()
