-- speedrun.harness.ladder: the ladder a calibration file holds for one card and scale, as
-- `speedrun calibrate --show` prints it (tasks/CALIBRATION.md states its verdicts): every
-- reference's budget (tuned or not, its 20 % cut), time to target and loss, then every task's
-- transition, start -> target, against 3 x the larger std. Pure: tables in, rows and text out.
local tune = require "speedrun.harness.tune"
local engine = require "speedrun.harness.engine"
local stats = require "speedrun.stats"
local calibfile = require "speedrun.harness.calibfile"

local M = {}
local fmt = string.format

local function num(x) return type(x) == "number" and x or nil end

-- of an entry's runs: the counted warm-up's mean and std, and the timed steps' (train time less it),
-- from its per-run lists; nil when the entry has none (measured before they were kept)
local function split(e)
  local times, warm = e.times_ms, e.warmup_counted_ms
  if type(times) ~= "table" or type(warm) ~= "table" or #times ~= #warm or #times < 2 then return nil end
  local steps = {}
  for i = 1, #times do
    if type(times[i]) ~= "number" or type(warm[i]) ~= "number" then return nil end
    steps[i] = times[i] - warm[i]
  end
  local w, t = stats.ttest_less(warm, 0), stats.ttest_less(steps, 0)
  return {warm = w.mean, warm_std = w.std, steps = t.mean, steps_std = t.std}
end

-- how often a score of the tuned budget passes, estimated from every run the search made at that
-- budget (its probe and its confirmations, pooled: tune.power), its std at least the search's
-- spread near it (tune.spread), and the same for the cut's runs
function M.pass_probabilities(t)
  local at, alpha, k = {}, num(t.alpha) or 0.01, num(t.runs) or 3
  for _, list in ipairs {t.probes or {}, t.confirmations or {}} do
    for _, P in ipairs(list) do
      if type(P) == "table" and P.steps == t.steps then at[#at + 1] = {values = P.val_losses} end
    end
  end
  local floor = tune.spread({t.probes, t.confirmations}, num(t.steps))
  return (#at > 0 and num(t.target)) and tune.power(at, t.target, alpha, k, floor) or nil, tune.cut_power(t)
end

-- a note for a score when a reference's tuned budget passes a score less often than the tuner
-- now requires (tune.POWER; budgets tuned before that rule): a valid recipe could then fail by
-- luck. refs: {{name, entry}...}; nil when each one is reliable or cannot be estimated
function M.reliability_note(refs)
  local weak = {}
  for _, r in ipairs(refs) do
    local t = type(r[2]) == "table" and type(r[2].tune) == "table" and r[2].tune or nil
    local pr = t and M.pass_probabilities(t)
    if pr and pr < tune.POWER then weak[#weak + 1] = fmt("%s ~%.0f %%", r[1], 100 * pr) end
  end
  if #weak == 0 then return nil end
  return fmt("a score of the references' tuned budgets passes only %s of the time (< %.0f %%): a recipe as "
    .. "good as the target can fail by luck; re-tune with `speedrun calibrate --tune-steps`",
    table.concat(weak, ", "), 100 * tune.POWER)
end

-- the reference rows: {name, steps, tuned, cut = {steps, pass, p, pass_prob}|nil, mean, std, runs, loss,
-- loss_std, timed_alone, pass_prob, loose (tune.loose: why the budget is not tight), score_runs (tune.runs: the
-- runs of a score the budget was tuned for), split ({warm, warm_std, steps, steps_std}: the counted
-- warm-up and the timed steps, when the entry kept them), tune_s / time_s (the wall time of its last
-- search / of the plain calibrate that timed it), own_p (its timed runs' p when they would not pass
-- a score themselves: calibfile.passes), note}, by record number
function M.references(by_scale)
  local rows = {}
  for name, e in pairs(by_scale or {}) do
    if type(e) == "table" then
      local t = type(e.tune) == "table" and e.tune or nil
      local tuned = t ~= nil and t.steps == e.steps and t.target == e.target_val_loss
      local pass_prob, cut_prob
      if t then pass_prob, cut_prob = M.pass_probabilities(t) end
      local cut = t and type(t.cut) == "table" and {steps = t.cut.steps, pass = t.cut.pass, p = num(t.cut.p), pass_prob = cut_prob} or nil
      local own_pass = calibfile.passes(e, t and num(t.alpha) or 0.01)
      rows[#rows + 1] = {name = name, n = tonumber(name:match("(%d+)$")), steps = e.steps, tuned = tuned, cut = cut,
                         mean = num(e.mean_ms), std = num(e.std_ms), runs = e.completed or e.runs,
                         loss = num(e.val_loss_mean), loss_std = num(e.val_loss_std), target = num(e.target_val_loss),
                         timed_alone = e.timed_alone ~= false, confirmed = t and type(t.confirmations) == "table" and #t.confirmations > 0,
                         tune_s = t and num(t.wall_s), time_s = num(e.wall_s), pass_prob = pass_prob, loose = t and tune.loose(t) or nil,
                         score_runs = t and tonumber(t.runs) or nil, split = split(e), clock = engine.clock_of(e),
                         own_p = not own_pass and num(e.p) or nil,
                         engine = type(e.software) == "table" and type(e.software.engine) == "string" and e.software.engine or nil}
    end
  end
  table.sort(rows, function(a, b) return (a.n or 1e9) < (b.n or 1e9) or (a.n == b.n and a.name < b.name) end)
  return rows
end

-- a task's transition from its references: {task, from, to, gap, sigma3, verdict, why, scorable}; verdict
-- "holds" (target faster by more than 3 x the larger std), "does not hold", or "not measured";
-- references timed by different engine builds (software.engine) keep their verdict with a why:
-- the gap then holds the engine's change too
function M.transition(task, ref_i, ref_next, scale)
  local T = {task = task.id, from = task.start_name, to = task.target_name}
  local function unusable(r, name)
    if not r then return name .. " not calibrated" end
    if not (r.mean and r.std) then return name .. " not timed" end
    if scale == "proxy" and not r.tuned then return name .. " not tuned to the target" end
    if not r.timed_alone then return name .. " timed on a shared device" end
  end
  local why = unusable(ref_i, T.from) or unusable(ref_next, T.to)
  if not why and ref_i.clock and ref_next.clock and ref_i.clock ~= ref_next.clock then
    why = fmt("timed by different clock rules, %d and %d (harness/engine.lua): re-time both", ref_i.clock, ref_next.clock)
  end
  if why then T.verdict, T.why = "not measured", why return T end
  T.gap, T.sigma3 = ref_i.mean - ref_next.mean, 3 * math.max(ref_i.std, ref_next.std)
  T.speedup = T.gap / ref_i.mean
  T.verdict = T.gap > T.sigma3 and "holds" or "does not hold"
  local whys = {}
  if ref_i.engine and ref_next.engine and ref_i.engine ~= ref_next.engine then
    whys[1] = fmt("timed by different engines, %s and %s: re-time both", ref_i.engine, ref_next.engine)
  end
  local a, b = ref_i.split, ref_next.split
  if T.verdict == "does not hold" and a and b and (ref_i.steps or 0) > 0 and (ref_next.steps or 0) > 0 then
    -- the target's time as its steps and their cost (the timed steps' time over the budget)
    local pa, pb = a.steps / ref_i.steps, b.steps / ref_next.steps
    whys[#whys + 1] = fmt("steps %d → %d (%+.0f %%), %.2f → %.2f ms a step (%+.0f %%)", ref_i.steps, ref_next.steps,
                          100 * (ref_next.steps / ref_i.steps - 1), pa, pb, 100 * (pb / pa - 1))
  end
  if T.verdict == "does not hold" and a and b and a.steps - b.steps > 3 * math.max(a.steps_std, b.steps_std) then
    whys[#whys + 1] = fmt("the timed steps alone hold, %.0f ms > %.0f: the counted warm-up's spread decides it",
                          a.steps - b.steps, 3 * math.max(a.steps_std, b.steps_std))
  end
  local loose = {}
  for _, r in ipairs {ref_i, ref_next} do if scale == "proxy" and r.loose then loose[#loose + 1] = r.name end end
  if #loose > 0 then whys[#whys + 1] = fmt("not scorable: %s not tight", table.concat(loose, " and ")) end
  T.why = #whys > 0 and table.concat(whys, "; ") or nil
  T.scorable = #loose == 0
  return T
end

-- the whole ladder: {references, transitions} for a calibration's card and scale and the tasks
-- of the manifest (task.start / task.target: "tasks/record_NN")
function M.build(calib, card, scale, tasks)
  local refs = M.references(((calib.entries or {})[card] or {})[scale])
  local by_name = {}
  for _, r in ipairs(refs) do by_name[r.name] = r end
  local transitions = {}
  for _, t in ipairs(tasks or {}) do
    local a, b = tostring(t.start):match("([^/]+)$"), tostring(t.target):match("([^/]+)$")
    transitions[#transitions + 1] = M.transition({id = t.id, start_name = a, target_name = b}, by_name[a], by_name[b], scale)
  end
  return {card = card, scale = scale, references = refs, transitions = transitions}
end

local function ms(x) return x and fmt("%.0f", x) or "-" end

-- the ladder as two markdown tables
function M.format(L)
  local out = {fmt("ladder: %s, scale %s", L.card, L.scale), "",
    "| reference | steps | tuned | passes a score | 80 % cut | train time, ms | val loss | target | tuning, s |",
    "|---|---|---|---|---|---|---|---|---|"}
  local tuning, n_tuned, timing, n_timed, other = 0, 0, 0, 0, {}
  for _, r in ipairs(L.references) do
    local cut = r.cut and fmt("%d: %s (p %s%s)", r.cut.steps, r.cut.pass and "PASSES" or "fails", r.cut.p and fmt("%.3g", r.cut.p) or "-",
      r.cut.pass_prob and fmt("; passes ~%.0f %%", 100 * r.cut.pass_prob) or "") or "-"
    if r.loose and L.scale == "proxy" then cut = cut .. ": **not tight**" end
    local sp = r.split and fmt("; warm-up %.0f ± %.0f", r.split.warm, r.split.warm_std) or ""
    out[#out + 1] = fmt("| %s | %s | %s | %s | %s | %s ± %s (%s runs%s%s) | %s | %s | %s |", r.name, tostring(r.steps),
      r.tuned and (r.confirmed and "yes, confirmed" or "yes") or "no", r.pass_prob and fmt("~%.0f %%%s", 100 * r.pass_prob,
        (r.score_runs and r.score_runs ~= 3) and fmt(" (%d-run scores)", r.score_runs) or "") or "-", cut, ms(r.mean), ms(r.std), tostring(r.runs),
      r.timed_alone and "" or ", shared device", sp, r.loss and fmt("%.4f ± %.4f", r.loss, r.loss_std or 0) or "-",
      r.target and fmt("%.4g", r.target) or "-", r.tune_s and fmt("%.0f", r.tune_s) or "-")
    if r.tune_s then tuning, n_tuned = tuning + r.tune_s, n_tuned + 1 end
    if r.time_s then timing, n_timed = timing + r.time_s, n_timed + 1 end
    if r.clock and r.clock ~= engine.CLOCK then other[#other + 1] = fmt("%s (rule %d)", r.name, r.clock) end
  end
  out[#out + 1] = ""
  local weak = {}
  for _, r in ipairs(L.references) do if r.own_p then weak[#weak + 1] = fmt("%s (p %.3g)", r.name, r.own_p) end end
  if #weak > 0 then
    out[#out + 1] = fmt("references whose own timed runs would not pass a score (their p not below the score's alpha; "
      .. "a budget tuned to pass ~90-100 %% of scores misses now and then): %s", table.concat(weak, ", "))
  end
  out[#out + 1] = fmt("tuning wall time: %.0f s for %d references (the last search of each)", tuning, n_tuned)
  if #other > 0 then
    out[#out + 1] = fmt("timed under another clock rule than this engine's (%d, harness/engine.lua): %s; `score` against "
      .. "them gives no FSR until they are re-timed (`speedrun calibrate --tasks ...`)", engine.CLOCK,
      #other == #L.references and "every reference" or table.concat(other, ", "))
  end
  if n_timed > 0 then
    out[#out + 1] = fmt("timing wall time: %.0f s for %d references (the plain calibrate that timed each); the ladder's "
      .. "calibration in all: %.0f s (%.2f h)", timing, n_timed, tuning + timing, (tuning + timing) / 3600)
  end
  out[#out + 1] = ""
  out[#out + 1] = "| task | start → target | gap, ms | 3σ, ms | speed-up | verdict |"
  out[#out + 1] = "|---|---|---|---|---|---|"
  local yes, hold = {}, {}
  for _, t in ipairs(L.transitions) do
    out[#out + 1] = fmt("| %d | %s → %s | %s | %s | %s | %s |", t.task, t.from, t.to, ms(t.gap), ms(t.sigma3),
      t.speedup and fmt("%.0f %%", 100 * t.speedup) or "-", t.why and fmt("%s (%s)", t.verdict, t.why) or t.verdict)
    if t.scorable then yes[#yes + 1] = tostring(t.task) end
    if t.verdict == "holds" then hold[#hold + 1] = tostring(t.task) end
  end
  if #L.transitions > 0 then
    out[#out + 1] = ""
    out[#out + 1] = fmt("transitions that hold: %d of %d%s", #hold, #L.transitions,
      #hold > 0 and " (tasks " .. table.concat(hold, ", ") .. ")" or "")
    out[#out + 1] = fmt("tasks `speedrun score --task N --scale %s` accepts against this file (on the data it was "
      .. "measured on): %d of %d%s", L.scale, #yes, #L.transitions, #yes > 0 and " (" .. table.concat(yes, ", ") .. ")" or "")
  end
  return table.concat(out, "\n")
end

return M
