-- tests/agent/study_example.lua: regenerates docs/examples/metrics/ (the example metrics page) from
-- the hand-built micro sweep of agent/study_fixture.lua, with two judge.json files written by hand
-- (the numbers are synthetic: the page shows the layout, not a result). Not a test; run from tests/:
--   ../build/speedrun run agent/study_example.lua
local fixture = require "agent.study_fixture"
local json = require "speedrun.json"

local tmp = (os.getenv("TMPDIR") or "/tmp") .. "/speedrun-study-example"
os.execute("rm -rf '" .. tmp .. "' && mkdir -p '" .. tmp .. "'")
local root = os.getenv("PWD") .. "/.."
local cells = fixture.build(tmp .. "/sweep", root)
local function judged(dir, t)
  local f = assert(io.open(dir .. "/judge.json", "w"))
  f:write(json.encode(t))
  f:close()
end
judged(cells[5], {schema = "speedrun.agent.judge/1", model = "judge-model", status = "ok", reproducibility_score = 0.8})
judged(cells[6], {schema = "speedrun.agent.judge/1", model = "judge-model", status = "ok", reproducibility_score = 0.2})
judged(cells[7], {schema = "speedrun.agent.judge/1", model = "judge-model", status = "error", reproducibility_score = json.null,
                  error = "no JSON in the judge's reply: I think the agent did fine."})
local out = root .. "/docs/examples/metrics"
os.execute("rm -rf '" .. out .. "'")
local cmd = ("cd '%s' && '%s' agent metrics sweep --out '%s' --reps 2000 --seed 1 --quiet "
  .. "--title 'speedrun agent metrics: example (hand-built micro sweep, synthetic numbers)'"):format(tmp, arg[-1], out)
assert(os.execute(cmd))
os.remove(out .. "/metrics.json")
print("example written to " .. out)
