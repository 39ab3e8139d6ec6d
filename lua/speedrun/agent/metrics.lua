-- speedrun.agent.metrics: the numbers of a study (benchmark.md §5; docs/agent.md "Reading a study").
-- A study is a set of cells, one agent run each: a folder with cell.json {task, hint_regime,
-- scaffold, model, seed, status} (written by `speedrun agent sweep`) next to the run's journal
-- (config.json, v_K/{meta,results}.json, v_K/score/score.json), or a plain `speedrun agent run`
-- folder (its config.json names the task, hint, scaffold, model and seed).
--   load(dirs) -> study {cells, warnings}
--   run_fsr(cell) -> the run's FSR by the benchmark's rules
--   runs(study) -> one row per run; top3(runs) -> one row per configuration (scaffold, hint, model)
--   intervals(configs, factor, opts) -> median / IQM / mean / optimality gap with bootstrap CIs
--   node_types(runs, factor) -> the fractions of node kinds and outcomes
-- Output (tables, CSV, HTML) is speedrun.agent.metrics_out and speedrun.agent.metrics_html.
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local journal = require "speedrun.agent.journal"
local bootstrap = require "speedrun.agent.bootstrap"
local similarity = require "speedrun.agent.similarity"
local taskmod = require "speedrun.task"
local read_file = require("speedrun.util").read_file

local M = {}
local fmt = string.format

M.DROPPED_TASKS = {[6] = true}       -- record 6 is dropped by the benchmark's analysis
M.FULL_THRESHOLD = 3.29              -- the analysis threshold at full scale (the search's is 3.28)
M.CLIP = {0, 3}                      -- FSR outside [0, 3] scores 0 ("summariser mistakes")
M.MEASURED = {valid = true, invalid = true, fail = true, undetermined = true}   -- statuses with a trusted time
M.FACTORS = {"hint", "scaffold", "model"}
M.REGIME_ORDER = {none = 1, L1 = 2, L2 = 3, L3 = 4, ["L1+L2"] = 5, ["L1+L2+L3"] = 6}

local function num(v) return type(v) == "number" and v == v and v or nil end
local function str(v) return (type(v) == "string" or type(v) == "number") and tostring(v) or nil end

local function is_dir(p) local st = H.stat(p, true) return st and st.type == "dir" end
local function exists(p) return H.stat(p, true) ~= nil end

-- ---------------------------------------------------------------------------------------------
-- loading

-- "1,2" / "1+2" / {1, 2} / nil -> "L1+L2" / "none"; names already in the regime form are kept
function M.regime(h)
  if h == nil or h == json.null or h == "" or h == "none" or h == "0" then return "none" end
  if type(h) == "table" then h = table.concat(h, ",") end
  h = tostring(h)
  if h:match("^L%d") then return h end
  local parts = {}
  for d in h:gmatch("%d+") do parts[#parts + 1] = "L" .. d end
  return #parts > 0 and table.concat(parts, "+") or h
end

-- the journal of a cell: the cell folder itself, else its one subfolder holding config.json
local function is_run(d) return exists(d .. "/config.json") and is_dir(d .. "/v_0") end

local function run_dir_of(dir)
  if is_run(dir) then return dir end
  local names = H.listdir(dir) or {}
  table.sort(names)
  for _, name in ipairs(names) do
    if is_dir(dir .. "/" .. name) and is_run(dir .. "/" .. name) then return dir .. "/" .. name end
  end
  return nil
end

-- every cell folder under dir (cell.json, else an agent run: config.json and v_0/), depth-first, sorted
local function find_cells(dir, depth, out)
  if exists(dir .. "/cell.json") or is_run(dir) then out[#out + 1] = dir return end
  if depth <= 0 then return end
  local names = H.listdir(dir) or {}
  table.sort(names)
  for _, name in ipairs(names) do
    local p = dir .. "/" .. name
    if name:sub(1, 1) ~= "." and name ~= "metrics" and is_dir(p) then find_cells(p, depth - 1, out) end
  end
end

local function node_of(n)
  local r = n.results or {}
  local m = type(r.metrics) == "table" and r.metrics or {}
  local S = journal.read_json(n.dir .. "/score/score.json")
  return {id = n.id, kind = n.meta.kind, bug_depth = num(n.meta.bug_depth) or 0, status = r.status,
          val_loss = num(m.val_loss), train_time_ms = num(m.train_time_ms), is_valid = m.is_valid == true,
          score = type(S) == "table" and S or nil, dir = n.dir}
end

-- one cell: its labels (cell.json first, then the run's config.json) and its nodes
function M.load_cell(dir)
  local C = journal.read_json(dir .. "/cell.json")
  C = type(C) == "table" and C or {}
  local rd = run_dir_of(dir)
  local cell = {dir = dir, run_dir = rd, status = str(C.status), nodes = {}}
  local J, err
  if rd then J, err = journal.open(rd, true) end
  local cfg = J and J.config or {}
  cell.task = math.tointeger(tonumber(C.task or cfg.task))
  cell.hint = M.regime(C.hint_regime ~= nil and C.hint_regime or cfg.hint)
  cell.scaffold = str(C.scaffold) or str(cfg.scaffold) or "?"
  cell.model = str(C.model) or str(cfg.model) or "?"
  cell.seed = math.tointeger(tonumber(C.seed or cfg.seed))
  cell.scale = str(cfg.scale)
  if not J then
    cell.error = err or "no journal (no config.json) in " .. dir
    return cell
  end
  for _, n in ipairs(J:list()) do cell.nodes[#cell.nodes + 1] = node_of(n) end
  cell.stopped = type(J.state.stopped) == "table" and J.state.stopped.reason or nil
  local jd = journal.read_json(dir .. "/judge.json")
  cell.judge = type(jd) == "table" and jd or nil
  return cell
end

-- load(dirs) -> {cells, warnings, manifest}
function M.load(dirs, opts)
  opts = opts or {}
  local found = {}
  for _, d in ipairs(dirs) do
    local before = #found
    find_cells((d:gsub("/+$", "")), opts.depth or 4, found)
    if #found == before then error("metrics: no cell (cell.json or an agent run's config.json) under " .. d, 0) end
  end
  local study = {cells = {}, warnings = {}, manifest = opts.manifest or taskmod.manifest()}
  for _, d in ipairs(found) do
    local c = M.load_cell(d)
    if c.error then
      study.warnings[#study.warnings + 1] = c.dir .. ": " .. c.error .. "; left out"
    elseif c.task and M.DROPPED_TASKS[c.task] then
      study.warnings[#study.warnings + 1] = fmt("%s: task %d dropped (the benchmark drops record 6)", c.dir, c.task)
    elseif not c.task then
      study.warnings[#study.warnings + 1] = c.dir .. ": no task named; left out"
    else
      study.cells[#study.cells + 1] = c
    end
  end
  return study
end

-- ---------------------------------------------------------------------------------------------
-- FSR per run (benchmark.md §5): FSR = (t_i - t_agent) / (t_i - t_{i+1}); t_agent the fastest
-- measured node (v_0 included) whose val_loss is below the threshold (3.29 at full scale, else the
-- scale's own target from score.json); no such node, a gap <= 0, or a value outside [0, 3] -> 0

local function task_entry(study, id)
  return study and study.manifest and taskmod.get(study.manifest, id) or nil
end

-- the cell's threshold and reference times from its score.json files (v_0's first)
function M.references(cell, study)
  local ref = {}
  for _, n in ipairs(cell.nodes) do
    local S = n.score
    if S then
      ref.scale = ref.scale or str(S.scale)
      local tt = type(S.summary) == "table" and type(S.summary.ttest) == "table" and num(S.summary.ttest.target)
      ref.target = ref.target or tt or nil
      local F = type(S.fsr) == "table" and S.fsr or {}
      if not ref.t_i and num(F.t_i_ms) and num(F.t_next_ms) then ref.t_i, ref.t_next = F.t_i_ms, F.t_next_ms end
    end
  end
  ref.scale = ref.scale or cell.scale
  local t = task_entry(study, cell.task)
  if ref.scale == "full" then
    ref.threshold = t and t.analysis_val_loss or M.FULL_THRESHOLD
    if not ref.t_i and t then ref.t_i, ref.t_next = t.t_start_ms, t.t_target_ms end
  else
    ref.threshold = ref.target
  end
  return ref
end

-- counts toward t_agent: a measured status (not a crash or a rule violation) and val_loss under the
-- threshold (the results' is_valid when no threshold is known)
function M.node_valid(n, threshold)
  if not n.train_time_ms or n.train_time_ms <= 0 then return false end
  if n.status and not M.MEASURED[n.status] then return false end
  if threshold then return n.val_loss ~= nil and n.val_loss < threshold end
  return n.is_valid
end

function M.run_fsr(cell, study)
  local ref = M.references(cell, study)
  local out = {threshold = ref.threshold, t_i = ref.t_i, t_next = ref.t_next, scale = ref.scale}
  local best, agent_best
  for _, n in ipairs(cell.nodes) do
    if M.node_valid(n, ref.threshold) then
      if not best or n.train_time_ms < best.train_time_ms then best = n end
      if n.id > 0 and (not agent_best or n.train_time_ms < agent_best.train_time_ms) then agent_best = n end
    end
  end
  out.best_id, out.t_agent = best and best.id, best and best.train_time_ms
  out.agent_best_id = agent_best and agent_best.id
  if not ref.t_i then out.fsr, out.reason = 0, "no reference times (calibration) for the task"
  elseif not best then out.fsr, out.reason = 0, "no valid node"
  elseif ref.t_i - ref.t_next <= 0 then out.fsr, out.reason = 0, "reference gap <= 0"
  else
    out.raw = (ref.t_i - best.train_time_ms) / (ref.t_i - ref.t_next)
    if out.raw < M.CLIP[1] or out.raw > M.CLIP[2] then out.fsr, out.reason = 0, "outside [0, 3]"
    else out.fsr, out.reason = out.raw, "ok" end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- similarity of the best agent node's change to the reference change (record i -> i+1)

local function reference_change(study, task, cache)
  if cache[task] ~= nil then return cache[task] end
  local t = task_entry(study, task)
  local root = study.manifest and study.manifest.root or "."
  local a = t and read_file(root .. "/" .. t.start .. "/recipe.lua")
  local b = t and read_file(root .. "/" .. t.target .. "/recipe.lua")
  cache[task] = (a and b) and similarity.change(a, b, "recipe.lua") or false
  return cache[task]
end

function M.agent_files(cell, id)
  local base = journal.code_files(cell.run_dir .. "/v_0/workspace")
  local mine = id and journal.code_files(fmt("%s/v_%d/workspace", cell.run_dir, id)) or base
  return base, mine
end

function M.similarity(cell, study, id, cache)
  local ref = reference_change(study, cell.task, cache)
  if not ref or not cell.run_dir then return nil end
  local base, mine = M.agent_files(cell, id)
  return similarity.compare(ref, similarity.change_files(base, mine))
end

-- ---------------------------------------------------------------------------------------------
-- per run

-- runs(study) -> one row per cell: labels, FSR and its parts, node counts, judge, similarity
function M.runs(study)
  local rows, cache = {}, {}
  for _, c in ipairs(study.cells) do
    local F = M.run_fsr(c, study)
    local r = {task = c.task, hint = c.hint, scaffold = c.scaffold, model = c.model, seed = c.seed, dir = c.dir,
               status = c.status, fsr = F.fsr, raw = F.raw, reason = F.reason, t_i = F.t_i, t_next = F.t_next,
               t_agent = F.t_agent, threshold = F.threshold, best_id = F.best_id, agent_best_id = F.agent_best_id,
               scale = F.scale, nodes = {}, error = c.error}
    for _, n in ipairs(c.nodes) do
      if n.id > 0 then
        r.nodes[#r.nodes + 1] = {kind = n.kind, buggy = n.bug_depth > 0, valid = M.node_valid(n, F.threshold),
                                 improved = M.node_valid(n, F.threshold) and F.t_i ~= nil and n.train_time_ms < F.t_i}
      end
    end
    local sim = M.similarity(c, study, F.agent_best_id, cache)
    r.similarity = sim and sim.dice or nil
    r.sim_recall, r.sim_precision = sim and sim.recall, sim and sim.precision
    local jd = c.judge
    if jd then
      r.judge = num(jd.reproducibility_score)
      r.judge_error = type(jd.error) == "string" and jd.error or nil
    end
    rows[#rows + 1] = r
  end
  table.sort(rows, function(a, b)
    if a.task ~= b.task then return a.task < b.task end
    for _, k in ipairs {"hint", "scaffold", "model"} do if a[k] ~= b[k] then return M.less(k, a[k], b[k]) end end
    return (a.seed or 0) < (b.seed or 0)
  end)
  return rows
end

-- the order of a factor's levels: the paper's regimes first, in the paper's order; else by name
function M.less(factor, a, b)
  if factor == "hint" then
    local x, y = M.REGIME_ORDER[a] or 99, M.REGIME_ORDER[b] or 99
    if x ~= y then return x < y end
  end
  return tostring(a) < tostring(b)
end

function M.levels(rows, factor)
  local seen, out = {}, {}
  for _, r in ipairs(rows) do
    if not seen[r[factor]] then seen[r[factor]] = true out[#out + 1] = r[factor] end
  end
  table.sort(out, function(a, b) return M.less(factor, a, b) end)
  return out
end

-- ---------------------------------------------------------------------------------------------
-- top-3 aggregation (main_plots): per configuration and task, the run FSRs sorted descending, the
-- top 3 kept (padded with the smallest); per position the mean over tasks; the mean of the three
-- position means, and its error bar: the std (ddof 0) of the position means / sqrt(tasks)

function M.top3_of(values)
  local s = {}
  for i, v in ipairs(values) do s[i] = v end
  table.sort(s, function(a, b) return a > b end)
  local out = {}
  for i = 1, 3 do out[i] = s[math.min(i, #s)] end
  return out
end

local function config_key(r) return r.scaffold .. "\0" .. r.hint .. "\0" .. r.model end

function M.top3(runs)
  local by, order = {}, {}
  for _, r in ipairs(runs) do
    local k = config_key(r)
    local c = by[k]
    if not c then
      c = {scaffold = r.scaffold, hint = r.hint, model = r.model, tasks = {}, fsr = {}, n_runs = 0}
      by[k] = c
      order[#order + 1] = c
    end
    c.fsr[r.task] = c.fsr[r.task] or {}
    table.insert(c.fsr[r.task], r.fsr)
    c.n_runs = c.n_runs + 1
  end
  for _, c in ipairs(order) do
    local tasks = {}
    for t in pairs(c.fsr) do tasks[#tasks + 1] = t end
    table.sort(tasks)
    c.task_ids, c.top = tasks, {}
    local pos = {0, 0, 0}
    for _, t in ipairs(tasks) do
      c.top[t] = M.top3_of(c.fsr[t])
      for i = 1, 3 do pos[i] = pos[i] + c.top[t][i] end
    end
    for i = 1, 3 do pos[i] = pos[i] / #tasks end
    c.positions, c.n_tasks = pos, #tasks
    c.mean = bootstrap.mean(pos)
    c.sem = bootstrap.std(pos) / math.sqrt(#tasks)
  end
  table.sort(order, function(a, b)
    for _, k in ipairs {"hint", "scaffold", "model"} do if a[k] ~= b[k] then return M.less(k, a[k], b[k]) end end
    return false
  end)
  return order
end

-- ---------------------------------------------------------------------------------------------
-- IQM and friends (plot_iqm_hint_model_search): the (task x configuration) x 3 matrix of top-3
-- scores pooled by a factor's level; each statistic with a stratified percentile bootstrap CI

function M.intervals(configs, factor, opts)
  opts = opts or {}
  local rows_by, out = {}, {}
  for _, c in ipairs(configs) do
    local lv = factor == "all" and "all" or c[factor]
    rows_by[lv] = rows_by[lv] or {}
    for _, t in ipairs(c.task_ids) do table.insert(rows_by[lv], c.top[t]) end
  end
  local levels = {}
  for lv in pairs(rows_by) do levels[#levels + 1] = lv end
  table.sort(levels, function(a, b) return M.less(factor, a, b) end)
  for _, lv in ipairs(levels) do
    local rows = rows_by[lv]
    local e = {factor = factor, level = lv, n_rows = #rows, n_scores = 3 * #rows}
    local c = bootstrap.cis(rows, bootstrap.STAT_NAMES, opts)
    for _, s in ipairs(bootstrap.STAT_NAMES) do e[s] = c[s] end
    out[#out + 1] = e
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- node types (the paper's pies): kinds draft / improve / debug, and outcomes buggy (bug_depth > 0),
-- improved (valid and faster than t_i), no improvement (the rest); k: only each run's first k
-- agent nodes (the paper plots the fractions against k)

M.FIRST_K = {1, 5, 10, 20}

function M.node_types(runs, factor, k)
  local by, levels = {}, {}
  for _, r in ipairs(runs) do
    local lv = factor == "all" and "all" or r[factor]
    local e = by[lv]
    if not e then
      e = {factor = factor, level = lv, nodes = 0, draft = 0, improve = 0, debug = 0, other = 0, buggy = 0,
           improved = 0, no_improvement = 0}
      by[lv] = e
      levels[#levels + 1] = lv
    end
    for i, n in ipairs(r.nodes) do
      if k and i > k then break end
      e.nodes = e.nodes + 1
      local k = (n.kind == "draft" or n.kind == "improve" or n.kind == "debug") and n.kind or "other"
      e[k] = e[k] + 1
      if n.buggy then e.buggy = e.buggy + 1
      elseif n.improved then e.improved = e.improved + 1
      else e.no_improvement = e.no_improvement + 1 end
    end
  end
  table.sort(levels, function(a, b) return M.less(factor, a, b) end)
  local out = {}
  for _, lv in ipairs(levels) do
    local e = by[lv]
    e.frac = {}
    for _, k in ipairs {"draft", "improve", "debug", "other", "buggy", "improved", "no_improvement"} do
      e.frac[k] = e.nodes > 0 and e[k] / e.nodes or 0
    end
    out[#out + 1] = e
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- per task x hint regime (the heat map): the mean of the top-3 scores of every configuration with
-- that regime on that task

function M.heat(configs)
  local cells, tasks, regimes, seen_t, seen_r = {}, {}, {}, {}, {}
  for _, c in ipairs(configs) do
    for _, t in ipairs(c.task_ids) do
      local k = t .. "\0" .. c.hint
      local e = cells[k] or {sum = 0, n = 0}
      for i = 1, 3 do e.sum, e.n = e.sum + c.top[t][i], e.n + 1 end
      cells[k] = e
      if not seen_t[t] then seen_t[t] = true tasks[#tasks + 1] = t end
      if not seen_r[c.hint] then seen_r[c.hint] = true regimes[#regimes + 1] = c.hint end
    end
  end
  table.sort(tasks)
  table.sort(regimes, function(a, b) return M.less("hint", a, b) end)
  local value = {}
  for k, e in pairs(cells) do value[k] = e.sum / e.n end
  return {tasks = tasks, regimes = regimes, get = function(t, r) return value[t .. "\0" .. r] end}
end

-- the judge's and the similarity's means by a factor's level: {level, n, mean, sem} each
function M.scores_by(runs, factor, key)
  local by, levels = {}, {}
  for _, r in ipairs(runs) do
    local lv = factor == "all" and "all" or r[factor]
    if not by[lv] then by[lv] = {} levels[#levels + 1] = lv end
    if num(r[key]) then table.insert(by[lv], r[key]) end
  end
  table.sort(levels, function(a, b) return M.less(factor, a, b) end)
  local out = {}
  for _, lv in ipairs(levels) do
    local xs = by[lv]
    local sd = #xs > 1 and bootstrap.std(xs) * math.sqrt(#xs / (#xs - 1)) or nil
    out[#out + 1] = {factor = factor, level = lv, n = #xs, mean = bootstrap.mean(xs),
                     sem = sd and sd / math.sqrt(#xs) or nil}
  end
  return out
end

-- compute(study, opts) -> everything the tables, CSV and page show
function M.compute(study, opts)
  opts = opts or {}
  local runs = M.runs(study)
  local configs = M.top3(runs)
  local R = {runs = runs, configs = configs, intervals = {}, node_types = {}, judge = {}, similarity = {},
             heat = M.heat(configs), warnings = study.warnings,
             opts = {reps = opts.reps or 2000, seed = opts.seed or 1, level = opts.level or 0.95}}
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    R.intervals[f] = M.intervals(configs, f, R.opts)
    R.node_types[f] = M.node_types(runs, f)
  end
  R.statuses = {}
  for _, r in ipairs(runs) do R.statuses[r.status or "-"] = (R.statuses[r.status or "-"] or 0) + 1 end
  R.first_k = {}
  for _, k in ipairs(M.FIRST_K) do R.first_k[#R.first_k + 1] = {k = k, types = M.node_types(runs, "all", k)[1]} end
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    R.judge[f] = M.scores_by(runs, f, "judge")
    R.similarity[f] = M.scores_by(runs, f, "similarity")
  end
  return R
end

return M
