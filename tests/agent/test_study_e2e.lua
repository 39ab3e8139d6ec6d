-- A study's tools on real agent runs: two cells made by `speedrun agent run` (task 1 at micro scale on
-- the CPU, a hand-made micro calibration t_1 = 2000 ms, t_2 = 1000 ms) against the scripted server,
-- one playing the oracle (its node is record 2's recipe), one replying with no edit; each cell
-- folder holds cell.json next to the run. `speedrun agent metrics` reads them (the FSR recomputed
-- here from the runs' own results.json files, similarity 1 for the oracle and 0 for the other),
-- `speedrun agent judge` scores the oracle's cell and skips the other.
local S = dofile("agent/server.lua")
S.isolate()
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local coder = require "speedrun.agent.coder"

local read = T.read
local W = T.workspace("agent-study-e2e", {})
local sh = T.shell_quote
local CALIB = W.tmp .. "/calib.json"
local function rec(ms) return {mean_ms = ms, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512,
                                val_loss_mean = 10.5, val_loss_std = 0.02} end
local f = assert(io.open(CALIB, "w"))
f:write(json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = {record_01 = rec(2000),
                                                                                               record_02 = rec(1000)}}}}))
f:close()

local REC1_SRC, REC2_SRC = read("../tasks/record_01/recipe.lua"), read("../tasks/record_02/recipe.lua")
local ORACLE = "Hypothesis: apply record 2's changes to record 1.\n\n" .. coder.blocks_from_diff(REC1_SRC, REC2_SRC, "recipe.lua")
local server = S.start()
local sweep = W.tmp .. "/sweep"
os.execute("rm -rf " .. sh(sweep))

local function cell(name, script, seed)
  server:script(name, script)
  local dir = sweep .. "/" .. name
  H.mkdir(sweep)
  H.mkdir(dir)
  local rc, text = W.run("agent run --task 1 --model " .. name .. " --base-url " .. sh(server:url(name, "/v1"))
    .. " --scale micro --max-nodes 1 --n-initial 1 --no-llm-summary --quiet --device cpu --threads 1 --steps 3"
    .. " --time-limit 60 --seed " .. seed .. " " .. W.data .. " --calibration " .. sh(CALIB) .. " --out " .. sh(dir .. "/run"))
  T.eq(rc, 0, text)
  local c = assert(io.open(dir .. "/cell.json", "w"))
  c:write(json.encode {task = 1, hint_regime = "none", scaffold = "aide", model = "oracle", seed = seed, status = "done"})
  c:close()
  return dir
end

-- the FSR from the run's own files: the fastest node (v_0 included) below the target 10.9
local function expected_fsr(dir)
  local best
  for _, id in ipairs {0, 1} do
    local r = json.decode(read(dir .. "/run/v_" .. id .. "/results.json") or "null")
    local m = r and r.metrics or {}
    if type(m.train_time_ms) == "number" and type(m.val_loss) == "number" and m.val_loss < 10.9
       and (r.status == "valid" or r.status == "invalid") then
      best = math.min(best or math.huge, m.train_time_ms)
    end
  end
  if not best then return 0 end
  local v = (2000 - best) / 1000
  return (v >= 0 and v <= 3) and v or 0
end

T.case("metrics and judge over two real agent runs", function()
  local good = cell("oracle", {{reply = ORACLE}}, 1)
  local none = cell("silent", {}, 2)   -- "ok" to every call: no edit block, the node is no_edit
  local out = W.tmp .. "/metrics"
  local rc, text = W.run("agent metrics " .. sh(sweep) .. " --out " .. sh(out) .. " --reps 100")
  T.eq(rc, 0, text)
  local runs = read(out .. "/runs.csv")
  local rows = {}
  for line in runs:gmatch("[^\n]+") do rows[#rows + 1] = line end
  T.eq(#rows, 3, runs)
  local header = {}
  for k in rows[1]:gmatch("[^,]+") do header[#header + 1] = k end
  local function field(row, name)
    local vals = {}
    for v in (row .. ","):gmatch("([^,]*),") do vals[#vals + 1] = v end
    for i, k in ipairs(header) do if k == name then return vals[i] end end
  end
  for _, row in ipairs {rows[2], rows[3]} do
    local dir = field(row, "dir")
    T.close(tonumber(field(row, "fsr")), expected_fsr(dir), 1e-5, row)
    T.eq(field(row, "t_i_ms"), "2000")
    T.eq(field(row, "threshold"), "10.9")
    if dir == good then
      T.eq(field(row, "agent_best_node"), "1")
      T.close(tonumber(field(row, "similarity")), 1, 1e-12, "the oracle's change is the reference change")
    else
      T.eq(field(row, "agent_best_node"), "")
      T.close(tonumber(field(row, "similarity")), 0, 1e-12)
    end
  end
  server:script("judge", {{reply = '```json\n{"key_changes": ["rope"], "reproducibility_score": 1.0}\n```'}})
  rc, text = W.run("agent judge " .. sh(sweep) .. " --model judge --base-url " .. sh(server:url("judge", "/v1")))
  T.eq(rc, 0, text)
  T.ok(text:match("ok%s+1%.000"), text)
  T.ok(text:match("skipped"), text)
  local J = json.decode(read(good .. "/judge.json"))
  T.close(J.reproducibility_score, 1, 1e-12)
  T.eq(json.decode(read(none .. "/judge.json")).status, "skipped")
  rc, text = W.run("agent metrics " .. sh(sweep) .. " --out " .. sh(out) .. " --reps 100")
  T.eq(rc, 0, text)
  T.ok(read(out .. "/runs.csv"):match(",1,,1,1,"), "the judge's 1 joined next to the similarity")
end)

server:stop()
T.done()
