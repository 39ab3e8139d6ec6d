-- speedrun agent metrics over a hand-built micro sweep (agent/study_fixture.lua: 2 tasks x 2 hint
-- regimes x 2 scaffolds x 2 seeds, plus a task-6 cell): FSR per run (clipping, invalid and
-- rejected nodes, v_0 included), the top-3 aggregation with mean +- SEM, median / IQM / mean by
-- regime, the bootstrap CIs (containing the estimate, deterministic for a seed), node types, the
-- full-scale threshold 3.29, the similarity measure on known diffs, the judge join, and the
-- command line (tables, CSV, a self-contained HTML page). Every expected number is worked out by
-- hand in the comments.
local T = require "speedrun.testing"
local metrics = require "speedrun.agent.metrics"
local bootstrap = require "speedrun.agent.bootstrap"
local similarity = require "speedrun.agent.similarity"
local fixture = require "agent.study_fixture"
local json = require "speedrun.json"

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_metrics"
os.execute("mkdir -p '" .. tmp .. "'")
local sweep = tmp .. "/sweep"
local cells = fixture.build(sweep, "..")

-- a cell the sweep has not started yet: cell.json only, no journal (left out with a warning)
os.execute("mkdir -p '" .. sweep .. "/pending'")
do
  local f = assert(io.open(sweep .. "/pending/cell.json", "w"))
  f:write('{"task": 2, "hint_regime": "L1", "scaffold": "flat", "model": "m", "seed": 3, "status": "pending"}')
  f:close()
end
local study = metrics.load({sweep})
local R = metrics.compute(study, {reps = 500, seed = 7})

local function run_of(task, hint, scaffold, seed)
  for _, r in ipairs(R.runs) do
    if r.task == task and r.hint == hint and r.scaffold == scaffold and r.seed == seed then return r end
  end
end

local function config_of(hint, scaffold)
  for _, c in ipairs(R.configs) do if c.hint == hint and c.scaffold == scaffold then return c end end
end

local function level(list, lv)
  for _, e in ipairs(list) do if e.level == lv then return e end end
end

T.case("cells: 18 found, task 6 dropped and an unstarted cell left out with warnings, labels from cell.json", function()
  T.eq(#study.cells, 16)
  T.eq(#R.runs, 16)
  local dropped = false
  for _, w in ipairs(study.warnings) do if w:match("task 6 dropped") then dropped = true end end
  T.ok(dropped, "a warning names the dropped task 6")
  local pending = false
  for _, w in ipairs(study.warnings) do if w:match("pending: no journal.*left out") then pending = true end end
  T.ok(pending, "the cell without a journal is named and left out")
  T.eq(R.runs[1].model, "m")
  T.eq(R.runs[1].scale, "micro")
end)

T.case("FSR per run: (t_i - t_agent) / (t_i - t_next), the benchmark's zeros", function()
  for _, c in ipairs(fixture.CELLS) do
    if c[1] ~= 6 then
      local r = run_of(c[1], c[2], c[3], c[4])
      T.close(r.fsr, c.fsr, 1e-12, string.format("task %d %s %s seed %d", c[1], c[2], c[3], c[4]))
    end
  end
  -- 650 ms against t_i 1000, gap 100: raw 3.5, outside [0, 3] -> 0
  local r = run_of(1, "none", "flat", 1)
  T.close(r.raw, 3.5, 1e-12)
  T.eq(r.reason, "outside [0, 3]")
  -- the crash has no time; the debug node (1010 ms) is slower than v_0 (1000 ms): t_agent = v_0's, FSR 0
  r = run_of(1, "none", "flat", 2)
  T.eq(r.best_id, 0)
  T.eq(r.agent_best_id, 2)
  T.close(r.raw, 0, 1e-12)
  -- a rejected node (rule violation) never counts, whatever its time (800 ms would be FSR 2)
  T.close(run_of(1, "L1", "flat", 1).fsr, 0.2, 1e-12)
  -- val_loss 5.5 is above the scale's target 5.0: no valid agent node
  r = run_of(2, "none", "flat", 1)
  T.eq(r.agent_best_id, nil)
  T.eq(r.threshold, 5.0)
end)

T.case("the full-scale threshold is 3.29 (not the search's 3.28), and invalid means 0", function()
  local function cell(vl, t)
    return {task = 1, scale = "full", nodes = {
      {id = 0, status = "valid", val_loss = 3.2766, train_time_ms = 2968348, bug_depth = 0, score = {scale = "full"}},
      {id = 1, status = "invalid", val_loss = vl, train_time_ms = t, bug_depth = 1}}}
  end
  local F = metrics.run_fsr(cell(3.285, 2209926), study)   -- the manifest's t_start, t_target at full scale
  T.eq(F.threshold, 3.29)
  T.close(F.fsr, 1.0, 1e-12, "3.285 < 3.29 counts")
  F = metrics.run_fsr(cell(3.29, 2209926), study)
  T.close(F.fsr, 0, 1e-12, "3.29 does not")
  T.eq(F.best_id, 0)
  local none = {task = 1, scale = "full", nodes = {{id = 0, status = "crash", bug_depth = 0}}}
  F = metrics.run_fsr(none, study)
  T.eq(F.fsr, 0)
  T.eq(F.reason, "no valid node")
end)

T.case("top-3 per task (padded with the smallest), mean of the position means +- SEM", function()
  -- none/aide: task 1 {0.5, 0.25} -> 0.5 0.25 0.25; task 2 {0.5, 0.1} -> 0.5 0.1 0.1
  -- positions (0.5, 0.175, 0.175); mean 0.85 / 3; std (ddof 0) 0.153206 / sqrt(2 tasks) = 0.108333
  local c = config_of("none", "aide")
  T.eq(c.n_tasks, 2)
  T.eq(c.n_runs, 4)
  T.close(c.positions[1], 0.5, 1e-12)
  T.close(c.positions[2], 0.175, 1e-12)
  T.close(c.positions[3], 0.175, 1e-12)
  T.close(c.mean, 0.85 / 3, 1e-12)
  T.close(c.sem, 0.1083333333, 1e-9)
  -- none/flat: task 1 {0, 0}; task 2 {0, 0.2} -> positions (0.1, 0, 0); mean 0.1/3; sem 0.047140/sqrt 2 = 1/30
  c = config_of("none", "flat")
  T.close(c.mean, 0.1 / 3, 1e-12)
  T.close(c.sem, 1 / 30, 1e-12)
  -- L1/aide: (1, 0.675, 0.675): mean 2.35 / 3, the same spread as none/aide
  c = config_of("L1", "aide")
  T.close(c.mean, 2.35 / 3, 1e-12)
  T.close(c.sem, 0.1083333333, 1e-9)
  -- L1/flat: task 1 {0.2, 0.1}; task 2 {0.7, 0.3} -> positions (0.45, 0.2, 0.2): mean 0.85 / 3, sem 1/12
  c = config_of("L1", "flat")
  T.close(c.mean, 0.85 / 3, 1e-12)
  T.close(c.sem, 1 / 12, 1e-12)
  T.eq(#metrics.top3_of({0.3}), 3)
  T.eq(metrics.top3_of({0.3})[3], 0.3)
end)

T.case("median, IQM, mean by hint regime over the pooled top-3 scores", function()
  -- none: 0 0 0 0 0 .1 .1 .2 .25 .25 .5 .5 -> median .1; IQM (cut 3 each side) (0+0+.1+.1+.2+.25)/6; mean 1.9/12
  local e = level(R.intervals.hint, "none")
  T.eq(e.n_scores, 12)
  T.close(e.median.estimate, 0.1, 1e-12)
  T.close(e.iqm.estimate, 0.65 / 6, 1e-12)
  T.close(e.mean.estimate, 1.9 / 12, 1e-12)
  -- L1: .1 .1 .2 .3 .3 .6 .6 .7 .75 .75 1 1 -> median .6; IQM (.3+.3+.6+.6+.7+.75)/6; mean 6.4/12
  e = level(R.intervals.hint, "L1")
  T.close(e.median.estimate, 0.6, 1e-12)
  T.close(e.iqm.estimate, 3.25 / 6, 1e-12)
  T.close(e.mean.estimate, 6.4 / 12, 1e-12)
  T.close(e.optimality_gap.estimate, 1 - 6.4 / 12, 1e-12)
  T.eq(R.intervals.hint[1].level, "none", "the paper's regime order")
  -- the heat map: task 1, none = the top-3 of none/aide (.5 .25 .25) and none/flat (0 0 0): 1/6
  T.close(R.heat.get(1, "none"), 1 / 6, 1e-12)
  T.close(R.heat.get(2, "L1"), (1 + .6 + .6 + .7 + .3 + .3) / 6, 1e-12)
  T.eq(#R.intervals.scaffold, 2)
  T.eq(#R.intervals.model, 1)
end)

T.case("bootstrap: CIs contain the estimate, are deterministic for a seed, move with it", function()
  for _, f in ipairs {"all", "hint", "scaffold", "model"} do
    for _, e in ipairs(R.intervals[f]) do
      for _, s in ipairs {"median", "iqm", "mean"} do
        local c = e[s]
        T.ok(c.lo <= c.estimate + 1e-12 and c.estimate <= c.hi + 1e-12,
             string.format("%s %s %s: %g in [%g, %g]", f, e.level, s, c.estimate, c.lo, c.hi))
        T.ok(c.lo >= 0 and c.hi <= 1, "FSRs here are in [0, 1]")
      end
    end
  end
  local rows = {{0.5, 0.25, 0.25}, {0.5, 0.1, 0.1}, {0, 0, 0}, {0.2, 0, 0}}
  local a, b = bootstrap.ci(rows, "iqm", {reps = 300, seed = 3}), bootstrap.ci(rows, "iqm", {reps = 300, seed = 3})
  T.eq(a.lo, b.lo)
  T.eq(a.hi, b.hi)
  local c = bootstrap.ci(rows, "mean", {reps = 300, seed = 4})
  local d = bootstrap.ci(rows, "mean", {reps = 300, seed = 3})
  T.ok(c.lo ~= d.lo or c.hi ~= d.hi, "another seed, other draws")
  -- a row of equal scores never varies: the CI of one constant row is that constant
  local k = bootstrap.ci({{0.4, 0.4, 0.4}}, "mean", {reps = 50, seed = 1})
  T.close(k.lo, 0.4, 1e-12)
  T.close(k.hi, 0.4, 1e-12)
  -- the stream: splitmix64 from seed 0 (first output 0xE220A8397B1DCDAF) in [0, 1)
  local r = bootstrap.rng(0)
  T.close(r(), (0xE220A8397B1DCDAF >> 11) / 2 ^ 53, 1e-15)
  T.close(bootstrap.iqm({1, 2, 3, 4, 5, 6, 7, 8}), 4.5, 1e-12)
  T.close(bootstrap.iqm({1, 2, 3, 4, 100}), 3, 1e-12)   -- floor(5/4) = 1 cut each side
  T.close(bootstrap.median({3, 1, 2}), 2, 1e-12)
  T.close(bootstrap.quantile({1, 2, 3, 4}, 0.5), 2.5, 1e-12)
end)

T.case("node types: kinds and outcomes over the 20 agent nodes", function()
  local e = level(R.node_types.all, "all")
  T.eq(e.nodes, 20)
  T.eq(e.draft, 17)
  T.eq(e.improve, 2)
  T.eq(e.debug, 1)
  T.eq(e.buggy, 4)            -- the invalid improve, the crash, the rejected draft, task 2's invalid draft
  T.eq(e.no_improvement, 1)   -- the 1010 ms debug node (valid, not faster than t_i = 1000)
  T.eq(e.improved, 15)
  T.close(e.frac.buggy, 0.2, 1e-12)
  -- each run's first node: 13 improved, 3 buggy (the crash, the rejected draft, task 2's invalid draft)
  local first = R.first_k[1]
  T.eq(first.k, 1)
  T.eq(first.types.nodes, 16)
  T.eq(first.types.buggy, 3)
  T.eq(first.types.improved, 13)
  T.eq(R.first_k[2].types.nodes, 20)
  local none = level(R.node_types.hint, "none")
  T.eq(none.nodes, 10)
  T.eq(none.buggy, 3)
end)

T.case("similarity: token overlap with the reference change on known diffs", function()
  local ref = similarity.change("local lr = 1.5e-3\nlocal steps = 100\n", "local lr = 1.8e-3\nlocal steps = 100\n", "r.lua")
  T.eq(ref.size, 2)   -- removes 1.5e-3, adds 1.8e-3
  local same = similarity.compare(ref, similarity.change("local lr = 1.5e-3 -- old\n", "local lr   = 1.8e-3 -- new\n", "r.lua"))
  T.close(same.dice, 1, 1e-12, "comments and spacing do not count")
  local half = similarity.compare(ref, similarity.change("local lr = 1.5e-3\n", "local lr = 2e-3\n", "r.lua"))
  T.close(half.dice, 0.5, 1e-12)
  T.close(half.recall, 0.5, 1e-12)
  local other = similarity.compare(ref, similarity.change("local steps = 100\n", "local steps = 90\n", "r.lua"))
  T.close(other.dice, 0, 1e-12)
  local none = similarity.compare(ref, similarity.change("x\n", "x\n", "r.lua"))
  T.close(none.dice, 0, 1e-12)
  T.eq(none.precision, nil)
  -- an added line: every token is new; a CUDA file is lexed as C (// comments)
  local add = similarity.change("a = 1\n", "a = 1\nb = 2 -- note\n", "r.lua")
  T.eq(add.size, 3)
  local cu = similarity.change("int x = 1; // a\n", "int x = 2; // b\n", "k.cu")
  T.eq(cu.size, 2)
  -- in the study: the one run whose best node is the target record scores 1, the others 0
  T.close(run_of(1, "L1", "aide", 1).similarity, 1, 1e-12)
  T.close(run_of(1, "L1", "aide", 2).similarity, 0, 1e-12)
  T.close(level(R.similarity.hint, "L1").mean, 1 / 8, 1e-12)
end)

T.case("judge scores are joined from CELL/judge.json", function()
  local f = assert(io.open(cells[5] .. "/judge.json", "w"))   -- task 1, L1, aide, seed 1
  f:write(json.encode {status = "ok", reproducibility_score = 0.8, model = "j"})
  f:close()
  f = assert(io.open(cells[6] .. "/judge.json", "w"))
  f:write(json.encode {status = "error", reproducibility_score = json.null, error = "no JSON in the judge's reply: x"})
  f:close()
  local R2 = metrics.compute(metrics.load({sweep}), {reps = 100})
  local L1 = level(R2.judge.hint, "L1")
  T.eq(L1.n, 1)
  T.close(L1.mean, 0.8, 1e-12)
  T.eq(level(R2.judge.hint, "none").n, 0)
  for _, r in ipairs(R2.runs) do
    if r.dir == cells[6] then T.ok(r.judge_error:match("no JSON"), "the error is carried") end
  end
  os.remove(cells[5] .. "/judge.json")
  os.remove(cells[6] .. "/judge.json")
end)

T.case("speedrun agent metrics: tables, CSV, one self-contained HTML page", function()
  local exe = T.shell_quote(arg[-1])
  local out = tmp .. "/out"
  os.execute("rm -rf '" .. out .. "'")
  local p = io.popen(exe .. " agent metrics " .. T.shell_quote(sweep) .. " --out " .. T.shell_quote(out)
    .. " --reps 200 --seed 2 2>&1; echo rc=$?")
  local text = p:read("a")
  p:close()
  T.ok(text:match("rc=0"), text)
  T.ok(text:match("Top%-3 aggregation"), "tables printed")
  T.ok(text:match("0%.283 %+%- 0%.108"), "none/aide's mean +- SEM in the table")
  for _, name in ipairs {"runs.csv", "configs.csv", "per_task.csv", "intervals.csv", "node_types.csv", "scores.csv",
                         "metrics.html"} do
    T.ok(io.open(out .. "/" .. name), name .. " written")
  end
  local html = io.open(out .. "/metrics.html"):read("a")
  T.ok(html:match("<svg"), "inline SVG")
  T.ok(not html:lower():match("<script"), "no scripts")
  T.ok(not html:match('src="http'), "nothing fetched")
  local csv = io.open(out .. "/runs.csv"):read("a")
  local n = 0
  for _ in csv:gmatch("\n") do n = n + 1 end
  T.eq(n, 17, "a header and 16 runs")
  T.ok(csv:match("^task,hint,scaffold,model,seed"), "header")
  p = io.popen(exe .. " agent metrics " .. T.shell_quote(tmp .. "/nothing-here") .. " 2>&1; echo rc=$?")
  text = p:read("a")
  p:close()
  T.ok(text:match("rc=1") and text:match("no cell"), text)
  p = io.popen(exe .. " agent metrics --bogus 2>&1; echo rc=$?")
  text = p:read("a")
  p:close()
  T.ok(text:match("rc=2"), text)
end)

T.done()
