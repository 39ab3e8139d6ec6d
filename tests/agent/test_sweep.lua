-- `speedrun agent sweep` end to end (lua/speedrun/agent/sweep.lua, hints.lua, runner.lua): a
-- micro sweep of 2 tasks x 2 hint regimes x 2 scaffolds x 2 seeds (16 cells, one node each, two
-- at a time on the CPU) against the scripted server (tests/agent/llm_server.js) playing an
-- oracle per task (record N's recipe to record N+1's, as SEARCH/REPLACE blocks); the sweep is
-- SIGKILLed mid-way, one of its orphaned cells too, then the same command resumes it: every cell
-- finishes, finished cells are not run again, no cell runs twice at once; a third call does
-- nothing. The hint regimes reach the coder's prompt. Also the grid's parsing and the hint names.
local S = dofile("agent/server.lua")
S.isolate()
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local process = require "speedrun.process"
local coder = require "speedrun.agent.coder"
local hints = require "speedrun.agent.hints"
local sweep = require "speedrun.agent.sweep"

local read = T.read
local sh = T.shell_quote
local W = T.workspace("agent-sweep", {})
local exe = arg[-1]

T.case("hint regimes: the paper's six names and their levels", function()
  T.eq(table.concat(hints.ORDER, " "), "none L1 L2 L3 L1+L2 L1+L2+L3")
  T.eq(hints.levels("none"), nil)
  T.eq(hints.levels("L1+L2+L3"), "1,2,3")
  T.eq(hints.regime("l1+l2"), "L1+L2")
  T.eq(hints.regime("all"), "L1+L2+L3")
  T.eq(hints.of_spec("1,2"), "L1+L2")
  T.eq(hints.of_spec(json.null), "none")
  T.eq(#hints.list("all6"), 6)
  T.eq(table.concat(hints.list("none,L1,L1+L2"), " "), "none L1 L1+L2")
  T.eq(hints.list("L2+L1"), nil, "only the six (L1+L2 is spelled in order)")
  T.eq(hints.list("L4"), nil)
end)

T.case("the grid: lists, ranges, seeds, cell keys in nesting order", function()
  T.eq(table.concat(sweep.int_list("1-3,5", "--tasks"), ","), "1,2,3,5")
  T.eq(sweep.int_list("3-1", "--tasks"), nil)
  T.eq(table.concat(sweep.seed_list("3"), ","), "1,2,3")
  T.eq(table.concat(sweep.seed_list("0,7"), ","), "0,7")
  local cells = sweep.cells {tasks = {1, 2}, hints = {"none", "L1"}, scaffolds = {"aide"}, models = {"org/M:1"},
                             seeds = {1, 2}}
  T.eq(#cells, 8)
  T.eq(cells[1].key, "t01-none-aide-org_M_1-s1")
  T.eq(cells[2].key, "t01-none-aide-org_M_1-s2")
  T.eq(cells[8].key, "t02-L1-aide-org_M_1-s2")
  local spec, err = sweep.spec_of({tasks = "1", scaffolds = "aide,nope"})
  T.eq(spec, nil)
  T.ok(err:find("unknown scaffold", 1, true), err)
end)

-- task 1 and 2's records at micro scale on this CPU (made-up times: only the FSR's arithmetic uses them)
local CALIB = W.tmp .. "/calib.json"
local function rec(ms)
  return {mean_ms = ms, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512, val_loss_mean = 10.5,
          val_loss_std = 0.02}
end
T.write(CALIB, json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = {
  record_01 = rec(2000), record_02 = rec(1000), record_03 = rec(800)}}}}))

local SRC = {}
for i = 1, 3 do SRC[i] = read(("../tasks/record_%02d/recipe.lua"):format(i)) end
local function oracle(i)
  return {reply = ("Hypothesis: apply record %d's changes.\n\n"):format(i + 1)
    .. coder.blocks_from_diff(SRC[i], SRC[i + 1], "recipe.lua")}
end

local server = S.start()
server:script("sweep", {}, {match = {{"# Task 1:", oracle(1)}, {"# Task 2:", oracle(2)}}})

local OUT = W.tmp .. "/sweep"
os.execute("rm -rf " .. sh(OUT))
local ARGS = {"agent", "sweep", "--tasks", "1-2", "--hints", "none,L1", "--scaffolds", "aide,flat", "--models", "oracle",
              "--seeds", "2", "--out", OUT, "--jobs", "2", "--gpus", "none", "--poll", "0.1",
              "--base-url", server:url("sweep", "/v1"), "--scale", "micro", "--max-nodes", "1", "--no-llm-summary",
              "--device", "cpu", "--threads", "1", "--steps", "3", "--time-limit", "60", "--calibration", CALIB,
              "--train-files", W.ws .. "/data/syn_train_*.bin", "--val-files", W.ws .. "/data/syn_val_*.bin"}

local function spawn_sweep()
  local argv = {exe}
  for _, a in ipairs(ARGS) do argv[#argv + 1] = a end
  return process.spawn {argv = argv}
end

local function wait_exit(p, limit)
  local out, t0 = {}, H.now()
  while true do
    for _, c in ipairs(p:read(0.1) or {}) do out[#out + 1] = c[2] or c.data end
    local how, code = p:wait()
    if how then return how, code, table.concat(out) end
    if H.now() - t0 > (limit or 300) then p:kill(9) end
  end
end

local function cell_json(key)
  local t = json.decode(read(OUT .. "/cells/" .. key .. "/cell.json") or "null")
  return type(t) == "table" and t or nil
end

local function count(status)
  local n = 0
  for _, name in ipairs(H.listdir(OUT .. "/cells") or {}) do
    local cj = cell_json(name)
    if cj and cj.status == status then n = n + 1 end
  end
  return n
end
local function done_count() return count("done") end

T.case("micro sweep 2x2x2x2: SIGKILL mid-sweep (and an orphaned cell), resume finishes, no cell run twice", function()
  local p = spawn_sweep()
  local t0 = H.now()
  -- killed once three cells are done and the next one is running (not between two cells)
  while not (done_count() >= 3 and count("running") > 0) and H.now() - t0 < 240 do p:read(0.05) end
  T.ok(done_count() >= 3, "three cells finished before the kill")
  p:kill(9)
  local how = wait_exit(p)
  T.eq(how, "signaled")
  local finished_before, killed = {}, nil
  for _, name in ipairs(H.listdir(OUT .. "/cells")) do
    local cj = cell_json(name)
    if cj and cj.status == "done" then finished_before[name] = read(OUT .. "/cells/" .. name .. "/v_1/results.json")
    elseif cj and cj.status == "running" and not killed then
      -- an orphaned cell of the dead sweep, killed too: it must be resumed, not restarted
      killed = name
      os.execute("kill -9 -" .. cj.handle:match("local:(%d+)") .. " 2>/dev/null")
    end
  end
  T.ok(killed, "a cell was running when the sweep died")
  local code, out
  how, code, out = wait_exit(spawn_sweep())
  T.eq(how .. code, "exited0", out)
  T.ok(out:find("16 cells, 16 done, 0 failed, 0 pending", 1, true), out)
  local index = json.decode(read(OUT .. "/sweep.json"))
  T.eq(#index.cells, 16)
  for _, c in ipairs(index.cells) do
    local cdir = OUT .. "/" .. c.dir
    local cj = cell_json(c.key)
    T.eq(cj.status, "done", c.key)
    T.eq(cj.nodes, 1, c.key)
    T.ok(cj.task == 1 or cj.task == 2)
    T.ok(cj.hint_regime == "none" or cj.hint_regime == "L1")
    T.ok(cj.scaffold == "aide" or cj.scaffold == "flat")
    T.eq(cj.model, "oracle")
    T.ok(cj.seed == 1 or cj.seed == 2)
    local st = json.decode(read(cdir .. "/state.json"))
    if c.key ~= killed then T.eq(st.sessions, 1, c.key .. ": run once") end
    local _, runs = (read(cdir .. "/agent.log") or ""):gsub("agent run in ", "")
    T.eq(runs, 1, c.key .. ": one session that finished, in the log")
    T.ok(read(cdir .. "/v_1/score/score.json"), c.key .. ": the node's score.json")
    T.eq(read(cdir .. "/v_2/meta.json"), nil, c.key .. ": one node only")
    local res = json.decode(read(cdir .. "/v_1/results.json"))
    T.eq(res.status, "valid", c.key)
    T.eq(read(cdir .. "/v_1/workspace/recipe.lua"), SRC[cj.task + 1], c.key .. ": the oracle's recipe")
    if finished_before[c.key] then T.eq(read(cdir .. "/v_1/results.json"), finished_before[c.key], c.key .. " kept") end
    local config = json.decode(read(cdir .. "/config.json"))
    local hint = config.hint ~= json.null and config.hint or nil
    T.eq(hint, cj.hint_regime == "L1" and "1" or nil, c.key .. ": hint level")
    T.eq(config.scaffold, cj.scaffold)
    T.eq(config.seed, cj.seed)
  end
  -- the hint regime reaches the prompt: L1 cells show task 1's level-1 hint, none cells do not
  local hint1 = read("../hints/task_01/level1.md"):match("[^\n]*%w[^\n]*")
  for _, r in ipairs(server:requests("sweep")) do
    local body = json.decode(r.body)
    local text = body.messages[#body.messages].content
    if text:find("# Task 1:", 1, true) then
      T.eq(text:find("# Ideas", 1, true) ~= nil, text:find(hint1, 1, true) ~= nil, "an Ideas section iff the hint")
    end
  end
  local list = {}
  for _, a in ipairs(ARGS) do list[#list + 1] = sh(a) end
  local rc, text = W.run(table.concat(list, " ") .. " --list")
  T.eq(rc, 0, text)
  local line = text:match("t02%-L1%-flat%-oracle%-s2[^\n]*") or ""
  T.ok(line:match("%s+done%s+1%s+max_nodes"), text)
  how, code, out = wait_exit(spawn_sweep())
  T.eq(how .. code, "exited0", out)
  T.ok(out:find("16 to run", 1, true) == nil and out:find("0 to run (16 finished)", 1, true), out)
end)

-- a cell whose run stopped but whose process was killed before its report and closing log line:
-- the sweep's refresh finishes it (report, summary, the line) once, as `agent run` would have
T.case("refresh: a cell killed between its stop and its report is finished by the sweep", function()
  local key = "t01-none-aide-oracle-s1"
  local src, cdir = OUT .. "/cells/" .. key, W.tmp .. "/half/cells/" .. key
  os.execute("rm -rf " .. sh(W.tmp .. "/half") .. " && mkdir -p " .. sh(W.tmp .. "/half/cells") .. " && cp -r " .. sh(src) .. " " .. sh(cdir))
  os.remove(cdir .. "/summary.json")
  os.remove(cdir .. "/report.html")
  local log = read(cdir .. "/agent.log"):gsub("agent run in [^\n]*\n", "")
  T.write(cdir .. "/agent.log", log)
  local cj = json.decode(read(cdir .. "/cell.json"))
  cj.status = "running"
  T.write(cdir .. "/cell.json", json.encode(cj))
  local cell = {key = key, task = 1, hint_regime = "none", scaffold = "aide", model = "oracle", seed = 1}
  for _ = 1, 2 do
    local counts = sweep.refresh(W.tmp .. "/half", {cell})
    T.eq(counts.done, 1)
  end
  T.ok(read(cdir .. "/summary.json") and read(cdir .. "/report.html"), "the report written")
  local _, lines = read(cdir .. "/agent.log"):gsub("agent run in ", "")
  T.eq(lines, 1, "the closing line, once")
  T.eq(json.decode(read(cdir .. "/cell.json")).status, "done")
end)

-- the same half-finished cell while its process still runs (an orphan of a dead sweep, between its
-- stop and its report): a refresh leaves it to that process; once it is gone, the refresh finishes it
T.case("refresh: a cell whose process still runs is left to it (one closing line)", function()
  local key = "t01-none-aide-oracle-s1"
  local cdir = W.tmp .. "/half/cells/" .. key
  os.remove(cdir .. "/summary.json")
  local log = read(cdir .. "/agent.log"):gsub("agent run in [^\n]*\n", "")
  T.write(cdir .. "/agent.log", log)
  local p = io.popen("bash -c '(exec -a " .. key .. " sleep 30) >/dev/null 2>&1 & echo $!'")
  local pid = p:read("l")
  p:close()
  local cj = json.decode(read(cdir .. "/cell.json"))
  cj.status, cj.handle = "running", "local:" .. pid
  T.write(cdir .. "/cell.json", json.encode(cj))
  local cell = {key = key, task = 1, hint_regime = "none", scaffold = "aide", model = "oracle", seed = 1}
  T.eq(sweep.refresh(W.tmp .. "/half", {cell}).done, 1, "counted done: its run stopped")
  local _, lines = read(cdir .. "/agent.log"):gsub("agent run in ", "")
  T.eq(lines, 0, "no closing line written while the process lives")
  T.eq(json.decode(read(cdir .. "/cell.json")).status, "running")
  os.execute("kill -9 " .. pid .. " 2>/dev/null; sleep 0.2")
  sweep.refresh(W.tmp .. "/half", {cell})
  _, lines = read(cdir .. "/agent.log"):gsub("agent run in ", "")
  T.eq(lines, 1, "the closing line, once, after the process is gone")
  T.eq(json.decode(read(cdir .. "/cell.json")).status, "done")
end)

-- the metrics of that sweep, recomputed here from the cells' own node files: the run's FSR from
-- the fastest valid node (v_0 included; valid: is_valid and val_loss below the micro target 10.9)
-- against the calibration's times, clipped to [0, 3]; each configuration's top-3 position means
local function fields(line)   -- RFC 4180: "a, b" and "say ""x""" are one field each
  local f, i = {}, 1
  while i <= #line + 1 do
    if line:sub(i, i) == '"' then
      local j, buf = i + 1, {}
      while true do
        local q = assert(line:find('"', j, true), "an unclosed quote")
        buf[#buf + 1] = line:sub(j, q - 1)
        if line:sub(q + 1, q + 1) == '"' then buf[#buf + 1], j = '"', q + 2 else i = q + 2 break end
      end
      f[#f + 1] = table.concat(buf)
    else
      local c = line:find(",", i, true) or #line + 1
      f[#f + 1], i = line:sub(i, c - 1), c + 1
    end
  end
  return f
end

local function csv(path)
  local rows, head = {}, nil
  for line in (read(path) or ""):gmatch("[^\n]+") do
    local f = fields(line)
    if not head then head = f else
      local r = {}
      for i, k in ipairs(head) do r[k] = f[i] end
      rows[#rows + 1] = r
    end
  end
  return rows
end

T.case("metrics over the micro sweep: FSR per run and the top-3 aggregation, by hand", function()
  local M = W.tmp .. "/metrics"
  local rc, text = W.run("agent metrics " .. sh(OUT) .. " --out " .. sh(M) .. " --reps 50 --quiet")
  T.eq(rc, 0, text)
  local REF = {[1] = {2000, 1000}, [2] = {1000, 800}}
  local runs, by_config = csv(M .. "/runs.csv"), {}
  T.eq(#runs, 16)
  for _, r in ipairs(runs) do
    local task, best = tonumber(r.task), nil
    for _, v in ipairs {"v_0", "v_1"} do
      local m = json.decode(assert(read(r.dir .. "/" .. v .. "/results.json"), r.dir)).metrics
      if m.is_valid and m.val_loss < 10.9 and (not best or m.train_time_ms < best) then best = m.train_time_ms end
    end
    local raw = (REF[task][1] - best) / (REF[task][1] - REF[task][2])
    local fsr = (raw >= 0 and raw <= 3) and raw or 0
    T.close(tonumber(r.fsr), fsr, 1e-4, r.dir .. ": fsr")
    T.close(tonumber(r.t_agent_ms), best, 1e-4, r.dir .. ": the agent's time")
    local key = r.hint .. "/" .. r.scaffold
    by_config[key] = by_config[key] or {}
    by_config[key][task] = by_config[key][task] or {}
    table.insert(by_config[key][task], fsr)
  end
  local configs = csv(M .. "/configs.csv")
  T.eq(#configs, 4)
  for _, c in ipairs(configs) do
    local pos = {0, 0, 0}
    for task = 1, 2 do
      local v = by_config[c.hint .. "/" .. c.scaffold][task]
      table.sort(v, function(a, b) return a > b end)
      for k = 1, 3 do pos[k] = pos[k] + (v[k] or v[#v]) / 2 end   -- padded with the smallest
    end
    for k = 1, 3 do T.close(tonumber(c["top" .. k]), pos[k], 1e-4, c.hint .. "/" .. c.scaffold .. " top" .. k) end
    T.close(tonumber(c.mean), (pos[1] + pos[2] + pos[3]) / 3, 1e-4, "mean")
  end
  T.ok((read(M .. "/metrics.html") or ""):find("<svg", 1, true), "the page has its plots")
end)

T.case("sweep: usage errors exit 2 before any work", function()
  local rc, text = W.run("agent sweep --tasks 1 --models m")
  T.eq(rc, 2, text)
  T.ok(text:find("--base-url", 1, true), text)
  rc, text = W.run("agent sweep --tasks 1 --hints L9 --models m --base-url http://x/v1")
  T.eq(rc, 2, text)
  T.ok(text:find("unknown hint regime", 1, true), text)
  rc, text = W.run("agent sweep --tasks 1,99 --models m --base-url http://x/v1")
  T.eq(rc, 2, text)
  T.ok(text:find("no task 99", 1, true), text)
  rc, text = W.run("agent sweep --help")
  T.eq(rc, 0, text)
  T.ok(text:find("--scaffolds", 1, true), text)
end)

server:stop()
T.done()
