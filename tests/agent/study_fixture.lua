-- tests/agent/study_fixture.lua: a hand-built micro sweep (the layout `speedrun agent sweep` writes:
-- one folder per cell with cell.json next to the agent's journal, each node's score/score.json)
-- for the metrics and judge tests and docs/examples/metrics/. 2 tasks x 2 hint regimes x 2
-- scaffolds x 2 seeds, plus a task-6 cell (dropped by the metrics). Reference times: task 1 t_i =
-- 1000 ms, t_{i+1} = 900 ms (gap 100); task 2 t_i = 2000, t_{i+1} = 1000 (gap 1000); the scale's
-- target val loss 5.0. Each cell's nodes and the FSR they give are listed in CELLS.
local json = require "speedrun.json"
local H = require "speedrun.harness_core"

local M = {}
local fmt = string.format

M.REF = {[1] = {t_i = 1000, t_next = 900}, [2] = {t_i = 2000, t_next = 1000}, [6] = {t_i = 1000, t_next = 500}}
M.TARGET = 5.0

-- node: {kind, status, val_loss, t (train ms), bug = bug_depth, code = "target" (the best node's
-- workspace is the target record's recipe)}; fsr: the expected FSR of the run
M.CELLS = {
  {1, "none", "aide", 1, fsr = 0.5, {"draft", "valid", 4.8, 950}, {"improve", "invalid", 5.2, 900, bug = 1}},
  {1, "none", "aide", 2, fsr = 0.25, {"draft", "valid", 4.9, 975}},
  {1, "none", "flat", 1, fsr = 0, {"draft", "valid", 4.7, 650}},                     -- raw 3.5: outside [0, 3]
  {1, "none", "flat", 2, fsr = 0, {"draft", "lua_error", nil, nil, bug = 1}, {"debug", "valid", 4.9, 1010}},
  {1, "L1", "aide", 1, fsr = 1.0, {"draft", "valid", 4.8, 900, code = "target"}, {"improve", "valid", 4.8, 925}},
  {1, "L1", "aide", 2, fsr = 0.75, {"draft", "valid", 4.9, 925}},
  {1, "L1", "flat", 1, fsr = 0.2, {"draft", "rejected", 4.0, 800, bug = 1}, {"draft", "valid", 4.9, 980}},
  {1, "L1", "flat", 2, fsr = 0.1, {"draft", "valid", 4.9, 990}},
  {2, "none", "aide", 1, fsr = 0.5, {"draft", "valid", 4.8, 1500}},
  {2, "none", "aide", 2, fsr = 0.1, {"draft", "valid", 4.8, 1900}},
  {2, "none", "flat", 1, fsr = 0, {"draft", "invalid", 5.5, 1200, bug = 1}},        -- no valid agent node
  {2, "none", "flat", 2, fsr = 0.2, {"draft", "valid", 4.9, 1800}},
  {2, "L1", "aide", 1, fsr = 1.0, {"draft", "valid", 4.8, 1000}},
  {2, "L1", "aide", 2, fsr = 0.6, {"draft", "valid", 4.8, 1400}},
  {2, "L1", "flat", 1, fsr = 0.7, {"draft", "valid", 4.9, 1300}},
  {2, "L1", "flat", 2, fsr = 0.3, {"draft", "valid", 4.9, 1700}},
  {6, "none", "aide", 1, fsr = nil, {"draft", "valid", 4.8, 600}},                  -- dropped
}

local function mkdir_p(path)
  local acc = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do acc = acc .. "/" .. part H.mkdir(acc) end
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function write_json(path, t) write(path, json.encode(t, true) .. "\n") end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- the recipe texts of task t's start and target records (root: the checkout)
function M.recipes(root, t)
  local start = read(fmt("%s/tasks/record_%02d/recipe.lua", root, t)) or "-- start\nlocal lr = 1.5e-3\n"
  local target = read(fmt("%s/tasks/record_%02d/recipe.lua", root, t + 1)) or "-- target\nlocal lr = 1.8e-3\n"
  return start, target
end

local function score_json(task, val_loss, t)
  local ref = M.REF[task]
  return {schema = "speedrun.score/1", scale = "micro", task = task, verdict = val_loss and val_loss < M.TARGET and "undetermined" or "fail",
          summary = {val_loss = {mean = val_loss or json.null}, train_time_ms = {mean = t or json.null},
                     ttest = {target = M.TARGET}},
          fsr = {t_i_ms = ref.t_i, t_next_ms = ref.t_next}}
end

local function node(dir, id, parent, spec, task, recipe)
  local d = fmt("%s/v_%d", dir, id)
  mkdir_p(d .. "/workspace")
  mkdir_p(d .. "/score")
  write(d .. "/workspace/recipe.lua", recipe)
  write_json(d .. "/meta.json", {id = id, parent = parent == nil and json.null or parent, children = json.array({}),
                                 kind = spec[1], iteration = id - 1, bug_depth = spec.bug or 0, stable_ancestor = 0})
  local valid = spec[2] == "valid"
  write_json(d .. "/results.json", {status = spec[2], metrics = {val_loss = spec[3] or json.null,
    train_time_ms = spec[4] or json.null, is_valid = valid, fsr = 0}, hypothesis = "h" .. id, outcome_summary = ""})
  if spec[3] or spec[4] then write_json(d .. "/score/score.json", score_json(task, spec[3], spec[4])) end
end

-- build(dir, root) -> the list of cell folders (in CELLS order)
function M.build(dir, root)
  os.execute("rm -rf '" .. dir .. "'")
  local out = {}
  for i, c in ipairs(M.CELLS) do
    local task, hint, scaffold, seed = c[1], c[2], c[3], c[4]
    local cd = fmt("%s/task%d-%s-%s-m-seed%d", dir, task, hint, scaffold, seed)
    mkdir_p(cd)
    local start, target = M.recipes(root, task)
    write_json(cd .. "/cell.json", {task = task, hint_regime = hint, scaffold = scaffold, model = "m", seed = seed,
                                    status = "done"})
    write_json(cd .. "/config.json", {schema = "speedrun.agent.config/1", task = task, scale = "micro", scaffold = scaffold,
                                      seed = seed, model = "m", hint = hint == "none" and json.null or "1"})
    write_json(cd .. "/state.json", {schema = "speedrun.agent.state/1", stopped = json.null})
    node(cd, 0, nil, {"root", "valid", 4.9, M.REF[task].t_i}, task, start)
    for k = 5, #c do node(cd, k - 4, 0, c[k], task, c[k].code == "target" and target or start) end
    out[i] = cd
  end
  return out
end

return M
