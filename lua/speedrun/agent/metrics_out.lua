-- speedrun.agent.metrics_out: a study's numbers (speedrun.agent.metrics.compute) as plain-text
-- tables and CSV files (docs/agent.md "Reading a study"). CSV: runs.csv (one row per run),
-- configs.csv (top-3 aggregation per scaffold x hint x model), per_task.csv (top-3 scores per
-- configuration and task), intervals.csv (median / IQM / mean / optimality gap with CIs by
-- factor), node_types.csv, scores.csv (judge and similarity means by factor).
local M = {}
local fmt = string.format

local function f3(v) return type(v) == "number" and fmt("%.3f", v) or "-" end
local function s(v) return v == nil and "-" or tostring(v) end

-- a text table: header, rows (lists of strings), columns padded to their widest cell
function M.table(header, rows)
  local w = {}
  for i, h in ipairs(header) do w[i] = #h end
  for _, r in ipairs(rows) do for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, #c) end end
  local function line(r)
    local t = {}
    for i, c in ipairs(r) do t[i] = c .. string.rep(" ", w[i] - #c) end
    return (table.concat(t, "  "):gsub("%s+$", ""))
  end
  local out = {line(header)}
  local rule = {}
  for i = 1, #header do rule[i] = string.rep("-", w[i]) end
  out[#out + 1] = line(rule)
  for _, r in ipairs(rows) do out[#out + 1] = line(r) end
  return table.concat(out, "\n") .. "\n"
end

local function ci_str(c) return c and c.estimate and fmt("%.3f [%.3f, %.3f]", c.estimate, c.lo, c.hi) or "-" end

local TITLES = {all = "all runs", hint = "by hint regime", scaffold = "by scaffold", model = "by model"}

function M.statuses(R)
  local keys, parts = {}, {}
  for k in pairs(R.statuses) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. " " .. R.statuses[k] end
  return table.concat(parts, ", ")
end

-- the whole report as text
function M.text(R)
  local out = {}
  local function add(x) out[#out + 1] = x end
  add(fmt("speedrun agent metrics: %d runs, %d configurations (scaffold x hint x model)\n", #R.runs, #R.configs))
  add("cells by status (cell.json; every cell with a journal counts): " .. M.statuses(R) .. "\n\n")
  local rows = {}
  for _, r in ipairs(R.runs) do
    rows[#rows + 1] = {s(r.task), r.hint, r.scaffold, r.model, s(r.seed), f3(r.fsr), f3(r.raw), r.reason,
                       r.agent_best_id and ("v_" .. r.agent_best_id) or "-", f3(r.judge), f3(r.similarity)}
  end
  add("Runs (FSR per run: 0 when no node is valid, the gap is <= 0 or the value is outside [0, 3])\n")
  add(M.table({"task", "hint", "scaffold", "model", "seed", "fsr", "raw", "why", "best", "judge", "similarity"}, rows))
  rows = {}
  for _, c in ipairs(R.configs) do
    rows[#rows + 1] = {c.hint, c.scaffold, c.model, s(c.n_tasks), s(c.n_runs), f3(c.positions[1]), f3(c.positions[2]),
                       f3(c.positions[3]), fmt("%.3f +- %.3f", c.mean, c.sem)}
  end
  add("\nTop-3 aggregation per configuration (position means over tasks; mean +- SEM over tasks)\n")
  add(M.table({"hint", "scaffold", "model", "tasks", "runs", "top1", "top2", "top3", "mean FSR"}, rows))
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    rows = {}
    for _, e in ipairs(R.intervals[f]) do
      rows[#rows + 1] = {s(e.level), s(e.n_scores), ci_str(e.median), ci_str(e.iqm), ci_str(e.mean), ci_str(e.optimality_gap)}
    end
    add(fmt("\nFSR %s (top-3 scores pooled; %d%% percentile bootstrap CI, %d reps, seed %d)\n", TITLES[f],
      math.floor(R.opts.level * 100 + 0.5), R.opts.reps, R.opts.seed))
    add(M.table({f, "scores", "median", "IQM", "mean", "optimality gap"}, rows))
  end
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    rows = {}
    for _, e in ipairs(R.node_types[f]) do
      local q = e.frac
      rows[#rows + 1] = {s(e.level), s(e.nodes), f3(q.draft), f3(q.improve), f3(q.debug), f3(q.buggy), f3(q.improved),
                         f3(q.no_improvement)}
    end
    add(fmt("\nNode types %s (fractions of agent nodes)\n", TITLES[f]))
    add(M.table({f, "nodes", "draft", "improve", "debug", "buggy", "improved", "no improvement"}, rows))
  end
  rows = {}
  for _, fk in ipairs(R.first_k) do
    local e = fk.types
    if e then rows[#rows + 1] = {s(fk.k), s(e.nodes), f3(e.frac.buggy), f3(e.frac.improved), f3(e.frac.no_improvement)} end
  end
  add("\nNode outcomes among each run's first k agent nodes\n")
  add(M.table({"k", "nodes", "buggy", "improved", "no improvement"}, rows))
  rows = {}
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    for i, e in ipairs(R.judge[f]) do
      local sm = R.similarity[f][i]
      rows[#rows + 1] = {f, s(e.level), s(e.n), e.mean and fmt("%.3f +- %s", e.mean, f3(e.sem)) or "-", s(sm.n),
                         sm.mean and fmt("%.3f +- %s", sm.mean, f3(sm.sem)) or "-"}
    end
  end
  add("\nLLM judge (reproducibility_score) and code similarity (token dice with the reference change), mean +- SEM\n")
  add(M.table({"factor", "level", "judged", "judge", "runs", "similarity"}, rows))
  if #R.warnings > 0 then
    add("\nWarnings\n")
    for _, w in ipairs(R.warnings) do add("  " .. w .. "\n") end
  end
  return table.concat(out)
end

-- ---------------------------------------------------------------------------------------------
-- CSV

local function cell(v)
  if v == nil then return "" end
  if type(v) == "number" then return v == math.floor(v) and math.abs(v) < 1e15 and fmt("%d", v) or fmt("%.6g", v) end
  v = tostring(v)
  if v:find('[,"\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

function M.csv(header, rows)
  local out = {}
  local h = {}
  for i, k in ipairs(header) do h[i] = cell(k) end
  out[1] = table.concat(h, ",")
  for _, r in ipairs(rows) do
    local t = {}
    for i = 1, #header do t[i] = cell(r[i]) end
    out[#out + 1] = table.concat(t, ",")
  end
  return table.concat(out, "\n") .. "\n"
end

-- {name = csv text} for every table
function M.csv_files(R)
  local files = {}
  local rows = {}
  for _, r in ipairs(R.runs) do
    local k = {draft = 0, improve = 0, debug = 0, buggy = 0}
    for _, n in ipairs(r.nodes) do
      if k[n.kind] then k[n.kind] = k[n.kind] + 1 end
      if n.buggy then k.buggy = k.buggy + 1 end
    end
    rows[#rows + 1] = {r.task, r.hint, r.scaffold, r.model, r.seed, r.status, r.fsr, r.raw, r.reason, r.t_i, r.t_next,
                       r.t_agent, r.threshold, r.best_id, r.agent_best_id, #r.nodes, k.draft, k.improve, k.debug, k.buggy,
                       r.judge, r.judge_error, r.similarity, r.sim_recall, r.sim_precision, r.dir}
  end
  files["runs.csv"] = M.csv({"task", "hint", "scaffold", "model", "seed", "status", "fsr", "fsr_raw", "fsr_reason",
    "t_i_ms", "t_next_ms", "t_agent_ms", "threshold", "best_node", "agent_best_node", "nodes", "draft", "improve", "debug",
    "buggy", "judge_score", "judge_error", "similarity", "similarity_recall", "similarity_precision", "dir"}, rows)
  rows = {}
  local per = {}
  for _, c in ipairs(R.configs) do
    rows[#rows + 1] = {c.hint, c.scaffold, c.model, c.n_tasks, c.n_runs, c.positions[1], c.positions[2], c.positions[3],
                       c.mean, c.sem}
    for _, t in ipairs(c.task_ids) do
      per[#per + 1] = {c.hint, c.scaffold, c.model, t, #c.fsr[t], c.top[t][1], c.top[t][2], c.top[t][3],
                       (c.top[t][1] + c.top[t][2] + c.top[t][3]) / 3}
    end
  end
  files["configs.csv"] = M.csv({"hint", "scaffold", "model", "tasks", "runs", "top1", "top2", "top3", "mean", "sem"}, rows)
  files["per_task.csv"] = M.csv({"hint", "scaffold", "model", "task", "runs", "top1", "top2", "top3", "top3_mean"}, per)
  rows = {}
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    for _, e in ipairs(R.intervals[f]) do
      for _, st in ipairs {"median", "iqm", "mean", "optimality_gap"} do
        local c = e[st]
        rows[#rows + 1] = {f, e.level, st, e.n_scores, c.estimate, c.lo, c.hi, c.level, c.reps, c.seed}
      end
    end
  end
  files["intervals.csv"] = M.csv({"factor", "level", "statistic", "scores", "estimate", "ci_lo", "ci_hi", "ci_level",
                                  "reps", "seed"}, rows)
  rows = {}
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    for _, e in ipairs(R.node_types[f]) do
      local q = e.frac
      rows[#rows + 1] = {f, e.level, e.nodes, q.draft, q.improve, q.debug, q.other, q.buggy, q.improved, q.no_improvement}
    end
  end
  for _, fk in ipairs(R.first_k) do
    local e, q = fk.types, fk.types and fk.types.frac
    if e then
      rows[#rows + 1] = {"first_k", fk.k, e.nodes, q.draft, q.improve, q.debug, q.other, q.buggy, q.improved, q.no_improvement}
    end
  end
  files["node_types.csv"] = M.csv({"factor", "level", "nodes", "draft", "improve", "debug", "other", "buggy", "improved",
                                   "no_improvement"}, rows)
  rows = {}
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    for i, e in ipairs(R.judge[f]) do
      local sm = R.similarity[f][i]
      rows[#rows + 1] = {f, e.level, e.n, e.mean, e.sem, sm.n, sm.mean, sm.sem}
    end
  end
  files["scores.csv"] = M.csv({"factor", "level", "judged", "judge_mean", "judge_sem", "runs", "similarity_mean",
                               "similarity_sem"}, rows)
  return files
end

return M
