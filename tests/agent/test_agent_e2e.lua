-- speedrun agent run end to end, with the real pieces wired as `speedrun agent run` wires them: the
-- chat client (speedrun.agent.llm over speedrun.http) talks to the scripted OpenAI-compatible server
-- (tests/agent/llm_server.js) playing an oracle model, whose reply is the SEARCH/REPLACE blocks
-- (speedrun.agent.coder.blocks_from_diff) turning record 1's recipe into record 2's; the coder
-- applies them and the host scores the node. Task 1 at micro scale on the CPU (synthetic shards, a
-- hand-made micro calibration: only the FSR's arithmetic uses its times).
local S = dofile("agent/server.lua")
S.isolate()
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local coder = require "speedrun.agent.coder"

local read = T.read
local W = T.workspace("agent-e2e", {})
local sh = T.shell_quote
local CALIB = W.tmp .. "/calib.json"
local REC = {mean_ms = 2000, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512, val_loss_mean = 10.5,
             val_loss_std = 0.02}
local REC2 = {mean_ms = 1000, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512, val_loss_mean = 10.5,
              val_loss_std = 0.02}
local f = assert(io.open(CALIB, "w"))
f:write(json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = {record_01 = REC,
                                                                                               record_02 = REC2}}}}))
f:close()

local REC1_SRC, REC2_SRC = read("../tasks/record_01/recipe.lua"), read("../tasks/record_02/recipe.lua")
local ORACLE = "Hypothesis: apply record 2's changes to record 1.\n\n"
  .. coder.blocks_from_diff(REC1_SRC, REC2_SRC, "recipe.lua")

local server = S.start()

T.case("agent run: the oracle's edit becomes a valid node whose recipe is record 2's", function()
  server:script("oracle", {{reply = ORACLE}})
  local out = W.tmp .. "/run"
  os.execute("rm -rf " .. sh(out))
  local rc, text = W.run("agent run --task 1 --model oracle --base-url " .. sh(server:url("oracle", "/v1"))
    .. " --scale micro --max-nodes 1 --n-initial 1 --no-llm-summary --quiet --device cpu --threads 1 --steps 3"
    .. " --time-limit 60 " .. W.data .. " --calibration " .. sh(CALIB) .. " --out " .. sh(out))
  T.eq(rc, 0, text)
  local res = json.decode(assert(read(out .. "/v_1/results.json"), "v_1 finished\n" .. text))
  T.eq(res.status, "valid", text .. "\n" .. json.encode(res))
  T.eq(read(out .. "/v_1/workspace/recipe.lua"), REC2_SRC, "the node's recipe is record 2's")
  local reqs = server:requests("oracle")
  T.ok(#reqs >= 1, "the model was asked")
  local body = json.decode(reqs[1].body)
  T.eq(body.model, "oracle")
  T.ok(body.messages[#body.messages].content:find("SEARCH", 1, true), "the prompt explains the edit format")
  local log = read(out .. "/llm.jsonl") or read(out .. "/v_1/llm.jsonl")
  T.ok(log and log:find('"oracle"', 1, true), "the call is logged")
  rc, text = W.run("agent report " .. sh(out))
  T.eq(rc, 0, text)
  T.ok((read(out .. "/report.html") or ""):find("v_1", 1, true), "the report shows the node")
end)

server:stop()
T.done()
