-- `speedrun task list | show | init` on a temporary workspace, and the manifest's consistency:
-- task ids are the benchmark's (1-5, 7-20; start record = id, target = id + 1), every task's start
-- and target records have recipe.lua and meta.lua, the hints exist at three levels, the
-- manifest's times and losses agree with the records' meta files.
local T = require "speedrun.testing"
local json = require "speedrun.json"
local task = require "speedrun.task"

local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/task_cli"
local sh = T.shell_quote
os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp))

local function speedrun(args)
  local ok, how, code = os.execute(sh(exe) .. " " .. args .. " > " .. sh(tmp .. "/out.txt") .. " 2>&1")
  local out = io.open(tmp .. "/out.txt"):read("a")
  return how == "exit" and code or 128 + code, out
end

local read = T.read
local root = ".."

-- the benchmark's 19 tasks are numbered by their start record: 1-5 and 7-20 (no task 6, the 6 -> 7
-- change was a PyTorch upgrade); the manifest holds some of them, in increasing order
local function allowed_id(id)
  return math.type(id) == "integer" and id >= 1 and id <= 20 and id ~= 6
end

T.case("manifest: task ids 1-5, 7-20, records and hints exist, times agree with meta", function()
  local m = assert(task.manifest(root))
  T.eq(m.schema, "speedrun.tasks/1")
  T.ok(#m.tasks >= 4, "at least tasks 1-4")
  local prev = 0
  for _, t in ipairs(m.tasks) do
    local i = t.id
    T.ok(allowed_id(i), "task id " .. tostring(i) .. " is one of 1-5, 7-20")
    T.ok(i > prev, ("task ids increase (%s after %s)"):format(tostring(i), prev))
    prev = i
    T.eq(t.start_record, i)
    T.eq(t.target_record, i + 1)
    T.eq(t.start, ("tasks/record_%02d"):format(i))
    T.eq(t.target, ("tasks/record_%02d"):format(i + 1))
    T.eq(t.hints, ("hints/task_%02d"):format(i))
    T.ok(read(root .. "/" .. t.start .. "/recipe.lua"), "start recipe of task " .. i)
    T.ok(read(root .. "/" .. t.target .. "/recipe.lua"), "target recipe of task " .. i)
    local ms, mt = assert(task.meta(root, t.start)), assert(task.meta(root, t.target))
    T.eq(ms.record, i)
    T.eq(mt.record, i + 1)
    T.eq(t.t_start_ms, ms.benchmark.train_time_ms, "t_start_ms of task " .. i)
    T.eq(t.t_target_ms, mt.benchmark.train_time_ms, "t_target_ms of task " .. i)
    T.eq(t.published_start_min, ms.published.time_min, "published_start_min of task " .. i)
    T.eq(t.published_target_min, mt.published.time_min, "published_target_min of task " .. i)
    T.eq(t.val_loss_start, ms.benchmark.val_loss, "val_loss_start of task " .. i)
    T.eq(t.val_loss_target, mt.benchmark.val_loss, "val_loss_target of task " .. i)
    T.ok(t.t_target_ms < t.t_start_ms, "the target is faster")
    for lv = 1, 3 do
      local h = read(("%s/%s/level%d.md"):format(root, t.hints, lv))
      T.ok(h and #h > 500, ("hint level %d of task %d"):format(lv, i))
    end
    -- the defaults reach every task
    T.eq(t.target_val_loss, 3.28)
    T.ok(#t.rules > 3 and #t.allowed_files >= 1, "rules and allowed files")
  end
  -- tasks 1-4 and the first ones after them are there
  for _, i in ipairs {1, 2, 3, 4} do T.ok(task.get(m, i), "task " .. i) end
  T.ok(not task.get(m, 6), "no task 6")
end)

T.case("task list", function()
  local rc, out = speedrun("task list")
  T.eq(rc, 0, out)
  local m = assert(task.manifest(root))
  for _, t in ipairs(m.tasks) do
    local i = t.id
    T.ok(out:find("\n" .. i .. "%s+rec " .. i .. "%s+rec " .. (i + 1)), "row of task " .. i .. "\n" .. out)
  end
  T.ok(not out:find("\n6%s+rec 6"), "no row for task 6")
end)

T.case("task show N [--hint L]", function()
  local rc, out = speedrun("task show 3")
  T.eq(rc, 0, out)
  T.ok(out:find("# Task 3:", 1, true), out)
  T.ok(out:find("## Rules", 1, true), "rules shown")
  T.ok(out:find("--hint L", 1, true), "hint levels advertised")
  for lv = 1, 3 do
    rc, out = speedrun("task show 1 --hint " .. lv)
    T.eq(rc, 0, out)
    local h = read(("%s/hints/task_01/level%d.md"):format(root, lv))
    T.ok(out:find(h, 1, true), "hint level " .. lv .. " printed verbatim")
  end
  rc, out = speedrun("task show 2 --hint 1,2")
  T.eq(rc, 0, out)
  T.ok(out:find("level 1", 1, true) and out:find("level 2", 1, true), "two levels")
  rc, out = speedrun("task show 6")                   -- never a task (the PyTorch upgrade)
  T.eq(rc, 2)
  T.ok(out:find("no task 6", 1, true), out)
  rc, out = speedrun("task show 1 --hint 4")
  T.eq(rc, 2)
  T.ok(out:find("hint level must be", 1, true), out)
  T.ok(not out:find("# Task 1", 1, true), "a bad hint level is refused before the statement is printed\n" .. out)
  rc, out = speedrun("task frobnicate")
  T.eq(rc, 2)
  T.ok(out:find("unknown subcommand", 1, true), out)
end)

T.case("task init N DIR [--hint L] makes a workspace", function()
  local ws = tmp .. "/ws2"
  local rc, out = speedrun("task init 2 " .. sh(ws) .. " --hint 2")
  T.eq(rc, 0, out)
  T.eq(read(ws .. "/recipe.lua"), read(root .. "/tasks/record_02/recipe.lua"), "the start recipe")
  T.eq(read(ws .. "/HINT.md"), read(root .. "/hints/task_02/level2.md") .. "\n", "the hint")
  T.ok(read(ws .. "/TASK.md"):find("# Task 2:", 1, true), "TASK.md")
  local info = json.decode(read(ws .. "/task.json"))
  T.eq(info.task, 2)
  T.eq(info.start_record, 2)
  T.eq(info.target_record, 3)
  T.eq(info.hint, "2")
  -- the workspace recipe loads and has the contract's functions
  local r = dofile(ws .. "/recipe.lua")
  T.ok(type(r.setup) == "function" and type(r.train_step) == "function" and type(r.eval) == "function", "contract")
  T.eq(r.name, "record_02")
  -- a non-empty folder needs --force
  rc, out = speedrun("task init 2 " .. sh(ws))
  T.eq(rc, 2)
  T.ok(out:find("not empty", 1, true), out)
  rc, out = speedrun("task init 2 " .. sh(ws) .. " --force")
  T.eq(rc, 0, out)
  -- no hint: no HINT.md
  local ws4 = tmp .. "/ws4"
  rc, out = speedrun("task init 4 " .. sh(ws4))
  T.eq(rc, 0, out)
  T.ok(not read(ws4 .. "/HINT.md"), "no hint file without --hint")
  T.eq(read(ws4 .. "/recipe.lua"), read(root .. "/tasks/record_04/recipe.lua"))
  rc = speedrun("task init 1")
  T.eq(rc, 2)
end)

T.case("train/score/calibrate: options checked before any work (usage error, exit 2)", function()
  local ws = tmp .. "/ws-opts"
  os.execute("rm -rf " .. sh(ws) .. " && mkdir -p " .. sh(ws) .. " && cp harness/recipes/good.lua " .. sh(ws .. "/recipe.lua"))
  local r = sh(ws .. "/recipe.lua")
  for _, case in ipairs {
    {"train " .. r .. " --steps 2.5", "--steps must be a positive integer"},
    {"train " .. r .. " --steps -3", "--steps must be a positive integer"},
    {"train " .. r .. " --steps abc", "--steps must be a positive integer"},
    {"train " .. r .. " --steps 0", "--steps must be a positive integer"},
    {"train " .. r .. " --seed -1", "--seed must be an integer >= 0"},
    {"train " .. r .. " --threads 1.5", "--threads must be"},
    {"train " .. r .. " --time-limit 0", "--time-limit must be a number above 0"},
    {"train " .. r .. " --mem-limit lots", "--mem-limit must be a size"},
    {"train " .. r .. " --steps --quiet", "option --steps needs a value"},
    {"train " .. r .. " --seed", "option --seed needs a value"},
    {"train " .. r .. " --scale 'huge!'", "--scale must be micro, demo, proxy, full or auto (or a scale the recipe names)"},
    {"score " .. sh(ws) .. " --runs 2.5", "--runs must be a positive integer"},
    {"score " .. sh(ws) .. " --runs -1", "--runs must be a positive integer"},
    {"score " .. sh(ws) .. " --alpha 2", "--alpha must be a number between 0 and 1"},
    {"score " .. sh(ws) .. " --task x", "--task must be a positive integer"},
    {"score " .. sh(ws) .. " --scale huge", "--scale must be"},
    {"score " .. sh(ws) .. " --task 1 --target 99", "drop --target"},
    {"score " .. sh(ws) .. " --out " .. sh(ws .. "/runs/x"), "inside the workspace"},
    {"train " .. r .. " --restricted --out " .. sh(ws .. "/out"), "inside the workspace"},
    {"calibrate --runs 0", "--runs must be a positive integer"},
    {"train " .. r .. " --stream shuffled", "--stream must be fixed or random, not 'shuffled'"},
    {"score " .. sh(ws) .. " --stream 1", "--stream must be fixed or random, not '1'"},
    {"calibrate --stream", "option --stream needs a value"},
    {"calibrate --tasks 1-x", "--tasks must list record numbers and ascending ranges, e.g. 1,2,3 or 1-5 or 1,7,9-11, not '1-x'"},
    {"calibrate --tasks 5-3", "not '5-3'"},
    {"calibrate --tasks 1,,2", "not '1,,2'"},
    {"calibrate --tasks 0 --show", "not '0'"},
  } do
    local rc, out = speedrun(case[1])
    T.eq(rc, 2, case[1] .. "\n" .. out)
    T.ok(out:find(case[2], 1, true), case[1] .. ": " .. out)
    T.ok(not out:find("traceback", 1, true), case[1] .. ": no traceback\n" .. out)
  end
  T.ok(not io.open(ws .. "/runs"), "nothing ran")
  -- a scale name the recipe does not define: refused by the child before any step (synthetic
  -- shards, so the check does not depend on a prepared corpus)
  local W = T.workspace("task_cli_scale", {})
  local rc, out = speedrun("train " .. r .. " --scale huge --device cpu " .. W.data .. " --out " .. sh(tmp .. "/huge"))
  T.ok(rc ~= 0 and out:find("the recipe has no scale 'huge' (its scales: ", 1, true), out)
  T.ok(not out:find("step:1/", 1, true), "no step ran:\n" .. out)
end)

T.case("task sync-hints: a re-tuned budget moves the hints that state it (a copy of the checkout)", function()
  local home = tmp .. "/home"
  os.execute("rm -rf " .. sh(home) .. " && mkdir -p " .. sh(home) .. " && cp -r ../lua ../tasks ../hints " .. sh(home))
  local rpath = home .. "/tasks/record_04/recipe.lua"   -- task 3's target
  local src = read(rpath)
  local steps = tonumber(src:match("\n%s*proxy%s*=%s*{.-steps%s*=%s*(%d+)"))
  T.ok(steps, "record 4's proxy steps")
  T.write(rpath, (src:gsub("(\n%s*proxy%s*=%s*{.-steps%s*=%s*)%d+", "%1" .. (steps + 2), 1)))
  local env = "SPEEDRUN_HOME=" .. sh(home) .. " "
  local function run(args)
    local _, how, code = os.execute(env .. sh(exe) .. " " .. args .. " > " .. sh(tmp .. "/out.txt") .. " 2>&1")
    return how == "exit" and code or 128 + code, io.open(tmp .. "/out.txt"):read("a")
  end
  local before = read(home .. "/hints/task_03/level1.md")
  local rc, out = run("task sync-hints 3 --check")
  T.eq(rc, 1, out)
  T.ok(out:find(("hints/task_03/level1.md:%%d+: proxy steps = %d %%-> %d"):format(steps, steps + 2)), out)
  T.eq(read(home .. "/hints/task_03/level1.md"), before, "--check writes nothing")
  rc, out = run("task sync-hints 3")
  T.eq(rc, 0, out)
  T.ok(read(home .. "/hints/task_03/level1.md"):find("proxy: steps = " .. (steps + 2), 1, true), "written")
  rc, out = run("task sync-hints --check")
  T.eq(rc, 0, out)
  T.ok(out:find("0 stale values", 1, true), out)
  rc, out = run("task sync-hints 6")
  T.eq(rc, 2, out)
end)

T.done()
