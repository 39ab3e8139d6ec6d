-- Parallel node runs (loop.run_batch through speedrun.agent.runner): `speedrun agent run
-- --scaffold forest --parallel 3` codes iteration 0's three drafts in turn, then scores them as
-- three concurrent jobs (CPU slots here) and writes their results in id order; with
-- `--node-backend slurm` the three go out as one sbatch array (the shims of tests/agent/slurm/
-- first on the PATH). Task 1 at micro scale against the scripted server playing the oracle.
local S = dofile("agent/server.lua")
S.isolate()
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local coder = require "speedrun.agent.coder"

local read = T.read
local sh = T.shell_quote
local W = T.workspace("agent-parallel", {})
local exe = arg[-1]

local CALIB = W.tmp .. "/calib.json"
local function rec(ms)
  return {mean_ms = ms, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512, val_loss_mean = 10.5,
          val_loss_std = 0.02}
end
T.write(CALIB, json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = {
  record_01 = rec(2000), record_02 = rec(1000)}}}}))
local REC1, REC2 = read("../tasks/record_01/recipe.lua"), read("../tasks/record_02/recipe.lua")

local server = S.start()
server:script("par", {}, {reply = "Hypothesis: record 2.\n\n" .. coder.blocks_from_diff(REC1, REC2, "recipe.lua")})

local function cwd()
  local p = io.popen("pwd")
  local s = p:read("l")
  p:close()
  return s
end

local function agent_run(out, extra, env)
  os.execute("rm -rf " .. sh(out))
  local cmd = (env or "") .. " " .. sh(exe) .. " agent run --task 1 --scaffold forest --max-nodes 3 --model oracle"
    .. " --base-url " .. sh(server:url("par", "/v1")) .. " --scale micro --no-llm-summary --quiet --device cpu"
    .. " --threads 1 --steps 3 --time-limit 60 --calibration " .. sh(CALIB) .. " " .. W.data .. " --out " .. sh(out)
    .. " " .. extra .. " > " .. sh(out .. ".log") .. " 2>&1"
  local ok = os.execute(cmd)
  return ok, read(out .. ".log") or ""
end

local function nodes(out)
  local t = {}
  for id = 1, 3 do t[id] = json.decode(assert(read(out .. "/v_" .. id .. "/results.json"), "v_" .. id)) end
  T.eq(read(out .. "/v_4/results.json"), nil, "three nodes")
  return t
end

T.case("--parallel 3: the three drafts of forest's iteration 0 scored as three concurrent local jobs", function()
  local out = W.tmp .. "/local"
  local ok, log = agent_run(out, "--parallel 3")
  T.ok(ok, log)
  local pids = {}
  for id, r in ipairs(nodes(out)) do
    T.eq(r.status, "valid", json.encode(r))
    T.eq(r.job.batch, 3)
    -- `speedrun score` exits 1 when one run cannot pass the t-test: the state is the job's, the status the score's
    T.ok(r.job.state == "COMPLETED" or r.job.state == "FAILED", tostring(r.job.state))
    local pid = r.job.handle:match("^local:(%d+)$")
    T.ok(pid and not pids[pid], "its own process: " .. tostring(r.job.handle))
    pids[pid or id] = true
    T.eq(read(out .. "/v_" .. id .. "/workspace/recipe.lua"), REC2)
    T.ok(read(out .. "/v_" .. id .. "/score/score.json"), "score.json")
  end
  local config = json.decode(read(out .. "/config.json"))
  T.eq(config.parallel.n, 3)
  T.eq(config.parallel.backend, "local")
end)

T.case("--node-backend slurm: the three drafts as one sbatch array (shims)", function()
  local D = W.tmp .. "/slurm-state"
  os.execute("rm -rf " .. sh(D) .. " && mkdir -p " .. sh(D))
  local env = "PATH=" .. sh(cwd() .. "/agent/slurm:" .. os.getenv("PATH")) .. " SLURM_SHIM_DIR=" .. sh(D)
  local out = W.tmp .. "/slurm"
  local ok, log = agent_run(out, "--parallel 3 --node-backend slurm --node-sbatch-args=--gres=gpu:1", env)
  T.ok(ok, log)
  local id0
  for id, r in ipairs(nodes(out)) do
    T.eq(r.status, "valid", json.encode(r))
    local jid, task = r.job.handle:match("^slurm:(%d+)_(%d+)$")
    T.eq(tonumber(task), id - 1, r.job.handle)
    id0 = id0 or jid
    T.eq(jid, id0, "one array")
  end
  local calls = read(D .. "/calls.log")
  local _, n = calls:gsub("sbatch ", "")
  T.eq(n, 1, calls)
  T.ok(calls:find("--gres=gpu:1", 1, true), calls)
  T.ok(read(out .. "/jobs/array-0.sh"):find("--array=0-2", 1, true), "the array script")
end)

server:stop()
T.done()
