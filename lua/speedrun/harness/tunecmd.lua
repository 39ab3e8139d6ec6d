-- speedrun.harness.tunecmd: `speedrun calibrate --tune-steps`, the command side of the step tuner
-- (harness/tune.lua holds the search itself): a probe's K runs (together on the device, or one
-- at a time for a confirmation's timed runs), each probe written into the calibration file as it
-- ends (a search cut by a time limit resumes from them), the tuned entry with the budget written
-- into the recipe, and a confirmed budget's pending cut run alone (after the step back its
-- recorded runs call for, once). cli.lua's run and entry helpers come in through M.bind. See
-- docs/harness.md ("calibrate").
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local tune = require "speedrun.harness.tune"
local calibfile = require "speedrun.harness.calibfile"
local summarize = require("speedrun.harness.summary").summarize
local output = require "speedrun.harness.output"
local util = require "speedrun.util"
local read_file = util.read_file
local write_file = output.write_file
local fmt = string.format

local M = {}

-- cli.lua's helpers: train_spec (the train command's options), multi_run, runs_target,
-- pass_or_fail, calib_entry, mkdir_p, iso_now
local D = {}
function M.bind(helpers) for k, v in pairs(helpers) do D[k] = v end end

-- K runs of `speedrun train` at once (seeds seed..seed+K-1), each a supervised run of its own:
-- the probes of the step tuner need only their losses, which sharing the device does not change
local function concurrent_runs(recipe, po, k, out_root, jobs)
  local sh = util.shell_quote
  local base = {sh(H.self_exe()), "train", sh(recipe), "--quiet"}
  for key, kind in pairs(D.train_spec) do
    if po[key] ~= nil and key ~= "seed" and key ~= "out" and key ~= "quiet" and key ~= "help" then
      base[#base + 1] = kind == "flag" and "--" .. key or ("--" .. key .. " " .. sh(po[key]))
    end
  end
  local cmds, seed0 = {}, tonumber(po.seed) or 1
  for i = 1, k do
    local out = fmt("%s/run%d", out_root, i)
    cmds[i] = fmt("%s --seed %d --out %s > %s 2>&1 &", table.concat(base, " "), seed0 + i - 1, sh(out), sh(out .. ".txt"))
  end
  D.mkdir_p(out_root)
  for first = 1, k, jobs do   -- jobs at a time (a run too large for the device K times over)
    os.execute("( " .. table.concat(cmds, " ", first, math.min(k, first + jobs - 1)) .. " wait )")
  end
  local runs = {}
  for i = 1, k do
    local s = read_file(fmt("%s/run%d/results.json", out_root, i))
    local r = s and json.decode(s)
    if type(r) ~= "table" then
      return nil, fmt("run %d at %s left no results.json: %s", i, out_root, read_file(fmt("%s/run%d.txt", out_root, i)) or "")
    end
    runs[i] = r
  end
  return runs
end

-- the options of runs at `steps` (nil: the recipe's own) with the schedule scaled; only the
-- recipe's own budget validates along the way (often: its curve's first crossing is the search's
-- next guess)
local function probe_options(o, steps)
  local po = util.deepcopy(o)
  po.steps, po["scale-schedule"] = steps and tostring(steps), true
  po["val-every"] = o["val-every"] or (steps and "1000000000" or tostring(tune.FIRST_VAL_EVERY))
  return po
end

-- --probe-jobs N (default: K on a GPU, 1 on the CPU): a probe's K runs share the device, N at a
-- time; probes_together: N > 1, and N
local function probes_together(o, k)
  local n = math.min(k, tonumber(o["probe-jobs"]) or (o.device == "cuda" and k or 1))
  return n > 1, n
end

-- the step tuner's probe: K runs at `steps` (nil: the recipe's own) with the schedule scaled,
-- judged by the score's rule; a run that does not complete ends the search. Runs that shared the
-- device give the search its losses. confirm: the confirmation of a budget (tune.search), K fresh
-- seeds (seed + K ...) run one at a time, the device their own: the calibration's times
-- (with --untimed together, as the probes). A resumed search's recorded probes of the same budget
-- are taken instead of runs (it.prior), unless fresh.
local function tune_probe(it, o, k, out_root, alpha, confirm, note, fresh)
  return function(steps)
    local function say(P, what)
      if o.quiet then return end
      print(fmt("-- %s, %d steps%s: val_loss %.4f +- %.4f, p = %.3g: %s", it.name, P.steps, what, P.mean or 0, P.std or 0,
        P.p or 1, P.pass and "reaches the target" or "does not reach the target"))
    end
    local rec = steps and not fresh and it.prior and tune.recorded(it.prior, steps, confirm)
    if rec then   -- a resumed search: this budget's runs were done by the call the time limit cut
      local P = tune.from_record(rec, it.prior.target, alpha)
      say(P, (confirm and " (confirmation)" or "") .. " (recorded)")
      return P
    end
    local po = probe_options(o, steps)
    local dir = fmt("%s/%s/%s-%s", out_root, it.name, confirm and "confirm" or "steps", steps or "recipe")
    if confirm then po.seed = tostring((tonumber(o.seed) or 1) + k) end
    local runs, err
    local together, jobs = probes_together(o, k)
    if together and (not confirm or o.untimed) then runs, err = concurrent_runs(it.recipe, po, k, dir, jobs)
    else runs, err = D.multi_run(it.recipe, po, k, dir, confirm and "confirm" or "tune") end
    if not runs then error(err, 0) end
    local target = D.runs_target(o, runs)
    local sum = summarize(runs, target or 0)
    if not sum.all_completed or not target then error(select(2, D.pass_or_fail(runs, sum, target, alpha)), 0) end
    local P = tune.judge(sum.val_loss.values, target, alpha, true)
    P.steps, P.runs, P.target, P.train_time_ms = runs[1].config.steps, runs, target, sum.train_time_ms
    P.crossing = tune.crossing(runs, target, alpha)
    note(P, confirm)
    say(P, confirm and fmt(" (confirmation, seeds %s-%d)", po.seed, tonumber(po.seed) + k - 1) or "")
    return P
  end
end

local function probe_record(P)
  local schedule = P.runs and P.runs[1].config.schedule or P.schedule
  return {steps = P.steps, schedule = schedule or json.null, val_losses = json.array(P.values),
          val_loss_mean = P.mean or json.null, val_loss_std = P.std or json.null, p = P.p or json.null, pass = P.pass,
          train_time_ms_mean = P.train_time_ms.mean or json.null, pass_probability = P.power or json.null}
end

-- --bracket auto: the bracket of a search cut before it finished (calib.searches), else the one
-- the entry's last search ended with ({below, steps}), when for the target asked for now (--target,
-- else the one it was tuned to); nil (a whole search) otherwise
function M.last_bracket(e, search, o)
  local t = type(e) == "table" and type(e.tune) == "table" and e.tune or {}
  if type(search) == "table" and (tonumber(o.target) or search.target) == search.target then
    local b = tune.bracket_of(search.probes)
    if b then return b end
  end
  local lo, hi, target = tonumber(t.below), tonumber(t.steps), tonumber(o.target) or t.target
  if lo and hi and lo < hi and t.target == target then return {lo, hi} end
end

-- the calibration entry of a finished search (or of a confirmed one, its cut pending: R.cut nil);
-- writes the tuned budget into the recipe; nil and why when it cannot
local function tuned_entry(it, o, k, card, R, alpha, t0)
  local cfg = R.best.runs and R.best.runs[1].config or {steps = R.best.steps, schedule = R.best.schedule}
  -- the calibration's times: the confirmation's K runs (fresh seeds), one at a time unless --untimed
  local timed, untimed = R.confirmed.runs, probes_together(o, k) and o.untimed
  -- --target moves the recipe's target with its budget: one command re-tunes the ladder to a new target
  local values = {steps = cfg.steps, target_val_loss = tonumber(o.target)}
  for key, v in pairs(type(cfg.schedule) == "table" and cfg.schedule or {}) do values[key] = v end
  local new, werr = tune.rewrite(read_file(it.recipe), R.best.runs and R.best.runs[1].scale or o.scale, values)
  if not new then return nil, fmt("%s: the tuned budget (%d steps) was not written: %s", it.name, R.steps, werr) end
  write_file(it.recipe, new)
  local entry = D.calib_entry(timed, it.recipe, o, card)
  entry.timed_alone = not untimed
  local probes = {}
  for i, P in ipairs(R.probes) do probes[i] = probe_record(P) end
  local confirmations = {}
  for i, P in ipairs(R.confirms) do confirmations[i] = probe_record(P) end
  entry.tune = {target = R.best.target, alpha = alpha, runs = k, first_seed = tonumber(o.seed) or 1,
                tolerance = tune.TOLERANCE, min_pass_probability = tune.POWER, steps = R.steps, schedule = cfg.schedule or json.null,
                below = R.below and R.below.steps or json.null, probes = probes, cut_fraction = tune.CUT,
                confirmations = confirmations, confirm_first_seed = (tonumber(o.seed) or 1) + k,
                cut = R.cut and probe_record(R.cut) or json.null, step_back = R.step_back or json.null,
                wall_s = H.now() - t0, tuned_at = D.iso_now()}
  return entry
end

-- the search's pass probability of a budget's pooled runs (tune.power), said as it is estimated;
-- lists: the search's runs so far, whose spread near the budget floors the std (tune.spread)
local function pooled_power(it, o, k, alpha)
  return function(ps, lists)
    local pw = tune.power(ps, ps[1].target, alpha, k, tune.spread(lists, ps[1].steps))
    if pw and not o.quiet then
      print(fmt("-- %s, %d steps: %d runs pooled, a score of %d runs passes ~%.0f %% of the time%s", it.name, ps[1].steps,
        #ps * k, k, 100 * pw, #ps > 1 and pw < tune.POWER and fmt(" (< %.0f %%: stepping up)", 100 * tune.POWER) or ""))
    end
    return pw
  end
end

-- the tuned budget's closing line: its bracket, pass probability and cut, and whether it is loose
local function say_tuned(it, entry, below, power, cut)
  local loose = tune.loose(entry.tune)
  print(fmt("%s: tuned to %d steps (%s; a score passes ~%.0f %% of the time); %d steps (%d %%) %s (~%.0f %%)%s", it.name,
    entry.tune.steps, below and fmt("%d steps do not reach the target", below) or "the smallest budget",
    100 * (tonumber(power) or 1), cut.steps, math.floor(tune.CUT * 100 + 0.5),
    cut.pass and "STILL REACH THE TARGET" or "do not reach it", 100 * (cut.power or 0),
    loose and fmt(": the target is loose for this recipe (%s); `score` refuses it at proxy scale", loose) or ""))
end

-- each probe into the calibration file as it ends (calibfile.note): a search cut by a time limit
-- resumes from them
local function noter(it, o, card, path)
  return function(P, confirm)
    calibfile.note(path, card, o.scale, it.name, P.target, probe_record(P), confirm, it.key)
  end
end

-- --tune-steps for one recipe: the search, the budget written into the recipe, and the entry of
-- the tuned budget's runs with how it was found; nil and why when no budget was found. The
-- confirmed budget is stored before its cut runs (cut pending), so a time limit there loses nothing.
local function tune_item(it, o, k, out_root, card, path)
  local alpha, t0, note = tonumber(o.alpha) or 0.01, H.now(), noter(it, o, card, path)
  local function stored(C)
    local entry = tuned_entry(it, o, k, card, C, alpha, t0)
    if not entry then return end
    calibfile.store(path, card, o.scale, it.name, entry)
    if not o.quiet then print(fmt("-- %s: %d steps confirmed, stored (cut pending)", it.name, C.steps)) end
  end
  local R, err = tune.search(tune_probe(it, o, k, out_root, alpha, false, note),
    {start = tonumber(o.steps), bracket = it.bracket or type(o.bracket) == "table" and o.bracket or nil,
     confirm = tune_probe(it, o, k, out_root, alpha, true, note), on_confirmed = stored,
     on_restart = function(cut, b)
       if not o.quiet then
         print(fmt("-- %s: %d steps (%d %% of %d) reach the target: %d is not the smallest budget that does; searching below %d",
           it.name, cut.steps, math.floor(tune.CUT * 100 + 0.5), b.steps, b.steps, cut.steps))
       end
     end,
     rerun = tune_probe(it, o, k, out_root, alpha, true, note, true),
     predict = function(ps, probes)
       return tune.predict_budget(ps, probes, ps[1].target, alpha, k, tune.spread({probes, ps}, ps[1].steps))
     end,
     between = function(lo_ps, hi_ps, lists)
       return tune.between(lo_ps, hi_ps, hi_ps[1].target, alpha, k, tune.spread(lists, hi_ps[1].steps))
     end,
     power = pooled_power(it, o, k, alpha)})
  if not R then return nil, fmt("%s: no step budget: %s", it.name, err) end
  local entry, eerr = tuned_entry(it, o, k, card, R, alpha, t0)
  if not entry then return nil, eerr end
  say_tuned(it, entry, R.below and R.below.steps, R.confirmed.power, R.cut)
  return entry
end

-- a stored budget's step back (tune.step_back_of: its recorded runs name a smaller budget), run
-- before its pending cut: a probe and a confirmation of that budget; both accepted, the entry of
-- that budget (written into the recipe, stored, its cut pending); else the stored entry, marked
-- as tried. Raises when a run fails.
local function step_back(it, o, k, out_root, card, path, e, back, alpha, note, power)
  if not o.quiet then
    print(fmt("-- %s: %d steps stored; its recorded runs name %d steps: a step back, once", it.name, e.tune.steps, back))
  end
  local t0 = H.now()
  local P = tune_probe(it, o, k, out_root, alpha, false, note)(back)
  local C, accepted
  if P.pass then
    C, accepted = tune.confirmation(P, {confirm = tune_probe(it, o, k, out_root, alpha, true, note), power = power,
                                        rerun = tune_probe(it, o, k, out_root, alpha, true, note, true)})
  end
  if not accepted then
    e.tune.step_back = {steps = back, taken = false}
    return e
  end
  local function recorded(list)   -- the stored search's records as probes (tunecmd's probe_record reads them back)
    local out = {}
    for i, r in ipairs(list) do out[i] = tune.from_record(r, e.tune.target, alpha) out[i].power = tonumber(r.pass_probability) end
    return out
  end
  local probes, confirms = recorded(e.tune.probes), recorded(e.tune.confirmations)
  probes[#probes + 1], confirms[#confirms + 1] = P, C
  local R = {steps = back, best = P, below = tonumber(e.tune.below) and {steps = tonumber(e.tune.below)}, probes = probes,
             confirmed = C, confirms = confirms, step_back = {steps = back, taken = true}}
  local entry, err = tuned_entry(it, o, k, card, R, alpha, t0)
  if not entry then error(err, 0) end
  entry.tune.wall_s = entry.tune.wall_s + (tonumber(e.tune.wall_s) or 0)
  calibfile.store(path, card, o.scale, it.name, entry)
  if not o.quiet then print(fmt("-- %s: stepped back to %d steps, stored (cut pending)", it.name, back)) end
  return entry
end

-- --bracket auto on a budget confirmed and stored whose cut a time limit stopped (tune.pending_cut):
-- its step back first when its recorded runs call for one (tune.step_back_of), then the cut's runs
-- alone (and their fresh-seed rerun near the limit), written into the stored entry; the search
-- before it is not run again, the entry's times are kept
local function resume_cut(it, o, k, out_root, card, path, e, steps)
  local alpha, t0, note = tonumber(o.alpha) or 0.01, H.now(), noter(it, o, card, path)
  local pooled = pooled_power(it, o, k, alpha)
  local function power(ps)   -- with the stored search's runs, and those run since (ps)
    local t = e.tune
    return pooled(ps, {t.probes, t.confirmations, ps})
  end
  local back = tune.step_back_of(e.tune, alpha, k)
  if back then
    local ok, res = pcall(step_back, it, o, k, out_root, card, path, e, back, alpha, note, power)
    if not ok then return nil, fmt("%s: the step back to %d steps: %s", it.name, back, res) end
    e, steps = res, math.max(1, math.floor(tune.CUT * res.tune.steps))
    t0 = H.now()   -- a step back taken counted its own time into the new entry
  end
  if not o.quiet then print(fmt("-- %s: %d steps confirmed and stored, its cut pending: the cut alone", it.name, e.tune.steps)) end
  local ok, cut = pcall(function()
    local P = tune_probe(it, o, k, out_root, alpha, false, note)(steps)
    P.power = power({P})
    return tune.confirm_cut(P, {confirm = tune_probe(it, o, k, out_root, alpha, true, note), power = power}, {})
  end)
  if not ok then return nil, fmt("%s: the cut of its %d steps: %s", it.name, e.tune.steps, cut) end
  e.tune.cut = probe_record(cut)
  e.tune.wall_s = (tonumber(e.tune.wall_s) or 0) + H.now() - t0
  local C = type(e.tune.confirmations) == "table" and e.tune.confirmations[#e.tune.confirmations] or {}
  say_tuned(it, e, tonumber(e.tune.below), C.pass_probability, cut)
  return e
end

-- --tune-steps for one recipe (it: name, recipe, key, bracket, prior, pending): a pending cut alone
-- (tune.pending_cut), else the search; the entry, or nil and why
function M.item(it, o, k, out_root, card, path)
  local cut_steps = it.pending and tune.pending_cut(it.pending, it.key, tonumber(o.target), k)
  if cut_steps then return resume_cut(it, o, k, out_root, card, path, it.pending, cut_steps) end
  return tune_item(it, o, k, out_root, card, path)
end

return M
