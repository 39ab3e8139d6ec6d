-- The memory study tools (docs/engine.md "Measuring memory"): bench/memory_recipe.lua on a
-- micro-scale record (what a step keeps alive at its first backward, with the tape's recompute
-- trade off and on: on keeps less), SPEEDRUN_MEMLOG's serials and frees read back by
-- bench/memlog_live.py at the marker memory_recipe writes (where python3 is), and bad options refused.
local T = require "speedrun.testing"
local sh = T.shell_quote
local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/memory-tools"
os.execute("mkdir -p " .. sh(tmp))

local run = T.run

local RECIPE = "../tasks/record_14/recipe.lua"
local base = sh(exe) .. " run ../bench/memory_recipe.lua " .. sh(RECIPE) .. " --scale micro --tokens 256"

T.case("memory_recipe: recompute on keeps less alive at the first backward than off", function()
  local ok, out = run(base)
  T.ok(ok, out)
  local kept = {}
  for mode, mib in out:gmatch("recompute (%a+): before the step [%d.]+ MiB; at the first backward %+([%d.]+) MiB") do
    kept[mode] = tonumber(mib)
  end
  T.ok(kept.on and kept.off, "both lines: " .. out)
  T.ok(kept.on < kept.off, ("on %s MiB, off %s MiB"):format(kept.on, kept.off))
end)

local has_python = run("python3 -c 'import argparse, collections, re'")
if not has_python then print("note: no python3, memlog_live.py is not checked") end

if has_python then T.case("memlog_live.py: the live set at memory_recipe's marker, grouped by Lua line", function()
  local log = tmp .. "/mem.log"
  local ok, out = run("(SPEEDRUN_MEMLOG=0 " .. base .. " --recompute on 2> " .. sh(log) .. ")")
  T.ok(ok, out)
  local text = T.read(log)
  T.ok(text:find("memlog: +[%d.]+ MiB cpu +live +[%d.]+ MiB +#%d+ freed"), "frees are logged")
  local ok2, live = run("python3 ../bench/memlog_live.py " .. sh(log) .. " --at 'backward starts'")
  T.ok(ok2, live)
  T.ok(live:match("^live on cpu at log line %d+: [%d.]+ MiB"), live)
  T.ok(live:find("record_14/recipe.lua:", 1, true), "grouped by the recipe's lines: " .. live)
  local ok3, none = run("python3 ../bench/memlog_live.py " .. sh(log) .. " --at 'no such marker'")
  T.ok(not ok3 and none:find("no line contains", 1, true), none)
end) end

T.case("memory_recipe: two token counts give the line through both, and its value at the scale's micro-batch", function()
  local cmd = sh(exe) .. " run ../bench/memory_recipe.lua " .. sh(RECIPE) .. " --scale micro --tokens 128,256 --recompute on"
  local ok, out = run(cmd)
  T.ok(ok, out)
  local kept = {}
  for n, mib in out:gmatch("(%d+) tokens a micro%-batch, recompute on: before the step [%d.]+ MiB; at the first backward %+([%d.]+) MiB") do
    kept[tonumber(n)] = tonumber(mib)
  end
  T.ok(kept[128] and kept[256], "a line per count: " .. out)
  local per, fixed, at = out:match("fit %(recompute on%): at the first backward ([%d.]+) KiB a token %+ (%-?[%d.]+) MiB.-"
                                   .. "micro%-batch of %d+ tokens, with the [%d.]+ GB before the step: ([%d.]+) GB")
  T.ok(per, "the fit line: " .. out)
  T.close(tonumber(per) * 128 / 1024, kept[256] - kept[128], 0.11)   -- MiB, as printed (one decimal)
  T.close(tonumber(fixed), kept[128] - tonumber(per) * 128 / 1024, 0.11)
  T.ok(tonumber(at) > 0)
end)

T.case("memory_recipe: bad options are refused with exit code 2", function()
  for _, extra in ipairs {"--recompute maybe", "--tokens 0", "--tokens 64,64", "--tokens 1,2,3", "--scale huge", "--bogus 1"} do
    local ok, out, code = run(base .. " " .. extra)
    T.ok(not ok and code == 2, extra .. ": " .. out)
  end
end)

T.done()
