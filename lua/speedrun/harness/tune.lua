-- speedrun.harness.tune: the step tuner of `speedrun calibrate --tune-steps`. For a reference
-- recipe at a scale it finds the smallest step budget whose K seeded runs reach the scale's target
-- under the score's own rule (every run completes, mean validation loss below the target with the
-- one-sided t-test p < alpha), the schedule's phases scaled with the steps; then it checks that
-- the budget cut by 20 % fails the same rule, and writes the budget into the recipe's scale table.
-- The search is pure (it calls a probe function), so tests drive it with synthetic probes too.
local stats = require "speedrun.stats"

local M = {}
local fmt = string.format
local mfloor, mceil, mmax, mmin, log, exp = math.floor, math.ceil, math.max, math.min, math.log, math.exp

M.CUT = 0.8            -- the cut that must fail: 80 % of the tuned steps
M.TOLERANCE = 0.02     -- the search stops when the bracket is within 2 % of the budget (or 1 step)
M.MAX_PROBES = 24     -- search probes and confirmations together (a whole search ~8-12, the confirmations up to 10)
M.DOWN, M.UP = 0.7, 1.4   -- bracketing factors before a bracket exists
M.FIRST_VAL_EVERY = 25    -- the first probe validates every 25 steps (M.crossing)
M.CONFIRM_TRIES = 5       -- budgets tried (stepping up by 1, 2, 4, 8 tolerances) for one that is confirmed
M.POWER = 0.9             -- a tuned budget must pass the score's rule in >= 90 % of scores (estimated)
M.BACK_POWER = 0.95       -- a step-up that overshot tries once the smallest budget below estimated to pass this often
M.CUT_POWER = 0.1         -- and its cut may pass in at most 10 % of scores (estimated from the cut's runs)
M.CUT_CONFIRM = 0.02     -- a failing cut estimated to pass more often than this is confirmed with fresh seeds
M.RESTARTS = 2            -- a cut passing below a failing probe restarts the search below it at most this many times

-- the (1 - alpha) quantile of Student's t with df degrees of freedom (bisection on the CDF)
function M.t_quantile(q, df)
  local lo, hi = 0, 1e3
  for _ = 1, 200 do
    local mid = (lo + hi) / 2
    if stats.t_cdf(mid, df) < q then lo = mid else hi = mid end
  end
  return (lo + hi) / 2
end

-- a probe's verdict from its runs' validation losses: {n, mean, std, p, pass, margin}. margin is
-- how far the upper confidence bound of the mean lies below the target: positive exactly when
-- p < alpha, the score's rule; all_completed false (a run crashed or was killed): no pass.
function M.judge(losses, target, alpha, all_completed)
  local t = stats.ttest_less(losses, target)
  local P = {n = #losses, mean = t.mean, std = t.std, p = t.p, values = losses}
  P.pass = all_completed and #losses >= 2 and t.p ~= nil and t.p < alpha or false
  if t.mean and t.std and #losses >= 2 then
    P.margin = target - (t.mean + M.t_quantile(1 - alpha, #losses - 1) * t.std / math.sqrt(#losses))
  end
  return P
end

-- the standard normal CDF (Abramowitz & Stegun 26.2.17, |error| < 7.5e-8)
local function normal_cdf(z)
  local t = 1 / (1 + 0.2316419 * math.abs(z))
  local poly = t * (0.319381530 + t * (-0.356563782 + t * (1.781477937 + t * (-1.821255978 + t * 1.330274429))))
  local q = exp(-z * z / 2) / math.sqrt(2 * math.pi) * poly
  return z >= 0 and 1 - q or q
end

-- the probability that k fresh runs pass the score's rule (one-sided t-test p < alpha) when run
-- losses are normal with this mean and std: E[Phi((target - mean - t*s/sqrt k) / (std/sqrt k))]
-- over the sample std s, (k-1) s^2 / std^2 ~ chi^2(k-1). A mean exactly at the bound passes half
-- the time; three runs need the mean ~6.3 std below the target to pass 90 % of the time, because
-- the sample std of three runs is often twice the true one. Numeric: s = std v / sqrt(k-1), the
-- density of v proportional to v^(k-2) exp(-v^2/2), on a grid.
function M.pass_probability(mean, std, target, alpha, k)
  if not (mean and std and k and k >= 2) then return nil end
  if std <= 0 then return mean < target and 1 or 0 end
  local t, nu, rk = M.t_quantile(1 - alpha, k - 1), k - 1, math.sqrt(k)
  local n, vmax, sum, wsum = 4000, math.sqrt(k - 1) + 12, 0, 0
  for i = 1, n do
    local v = (i - 0.5) * vmax / n
    local w = v ^ (nu - 1) * exp(-v * v / 2)
    local s = std * v / math.sqrt(nu)
    sum, wsum = sum + w * normal_cdf((target - mean - t * s / rk) / (std / rk)), wsum + w
  end
  return sum / wsum
end

-- the mean of xs and their squared deviations from it summed
local function moments(xs)
  local m, ss = 0, 0
  for _, v in ipairs(xs) do m = m + v end
  m = m / #xs
  for _, v in ipairs(xs) do ss = ss + (v - m) ^ 2 end
  return m, ss
end

-- the runs of several probes of one budget pooled: their number, mean, sample std and values
local function pooled(probes)
  local xs = {}
  for _, P in ipairs(probes) do for _, v in ipairs(P.values or {}) do xs[#xs + 1] = v end end
  if #xs < 2 then return #xs, nil, nil, xs end
  local m, ss = moments(xs)
  return #xs, m, math.sqrt(ss / (#xs - 1)), xs
end

-- the estimated pass probability of a budget from its probes' runs pooled (each probe {values},
-- the same budget): M.pass_probability of their mean and std, for k runs a score; the std at least
-- floor_std (M.spread: the search's runs near that budget), when given
function M.power(probes, target, alpha, k, floor_std)
  local n, m, std = pooled(probes)
  if n < 2 then return nil end
  return M.pass_probability(m, mmax(std, tonumber(floor_std) or 0), target, alpha, k)
end

M.SPREAD_WINDOW = 1.25   -- M.spread: the budgets within this factor of the one estimated

-- the run-to-run spread of a search near a budget: the within-budget std pooled over every probe
-- and confirmation of `lists` (lists of probes, each {steps, values} or a record's {steps,
-- val_losses}; the same runs listed twice count once) whose budget is within M.SPREAD_WINDOW of
-- `steps` (each budget's runs about their own mean), or nil with fewer than 2 degrees of freedom.
-- Three runs' std varies severalfold (0.002-0.015 across one search's budgets, records 6-21 at
-- proxy), and a budget is accepted when
-- its runs happened to come out tight: the accepted budget's own runs alone overstate how often a
-- score passes (records 2, 3, 11, 12 re-timed, 2026-12-06), the search's runs pooled do not
function M.spread(lists, steps)
  local ss, df, seen = 0, 0, {}
  for _, list in ipairs(lists or {}) do
    for _, P in ipairs(list) do
      local v, s = type(P) == "table" and (P.values or P.val_losses), type(P) == "table" and tonumber(P.steps)
      local key = type(v) == "table" and s and s .. ":" .. table.concat(v, ",")   -- a probe listed twice counts once
      if key and not seen[key] and #v >= 2 and steps and s * M.SPREAD_WINDOW >= steps and s <= steps * M.SPREAD_WINDOW then
        seen[key] = true
        ss, df = ss + select(2, moments(v)), df + #v - 1
      end
    end
  end
  return df >= 2 and math.sqrt(ss / df) or nil
end

-- how often a score of a tuned budget's cut would pass, estimated from the cut's runs (M.power),
-- or nil (no cut, no runs recorded or no target)
function M.cut_power(t)
  local cut = type(t) == "table" and t.cut
  if type(cut) ~= "table" or type(cut.val_losses) ~= "table" or not tonumber(t.target) then return nil end
  return M.power({{values = cut.val_losses}}, t.target, tonumber(t.alpha) or 0.01, tonumber(t.runs) or 3,
                 M.spread({t.probes, t.confirmations, {cut}}, tonumber(cut.steps)))
end

-- why a tuned budget (an entry's `tune` table) is not tight, or nil when it is: its cut not run,
-- the cut passing the score's rule, or the cut's runs estimating that a score of the cut passes
-- more than M.CUT_POWER of the time. A reference that is not tight lets a start recipe cut to
-- that budget score as a speed-up (tasks/CALIBRATION.md), so `score` refuses it at proxy scale.
function M.loose(t)
  local cut = type(t) == "table" and t.cut
  if type(cut) ~= "table" then return fmt("its %d %% cut was never run (the search ended before it)", mfloor(M.CUT * 100 + 0.5)) end
  local steps = tonumber(cut.steps) or 0
  if cut.pass then
    return fmt("its budget cut to %d steps still reaches the target (p %.3g)", steps, tonumber(cut.p) or 0)
  end
  local pw = M.cut_power(t)
  if pw and pw > M.CUT_POWER then
    return fmt("its budget cut to %d steps fails this time but passes a score ~%.0f %% of the time (> %.0f %%)", steps,
      100 * pw, 100 * M.CUT_POWER)
  end
end

-- the runs a score of the next search takes when a budget tuned for scores of k runs is loose
-- (calibrate --runs-up-to N): two more (3, 5, 7 ...), at most N; nil when k is N already. Loose
-- by its runs' spread, a budget gets tight with more runs a score: the t-test's margin shrinks
-- with the square root of the runs, so the budget that passes 90 % of scores comes down towards
-- the one that passes on average, and its cut further below it (records 1 and 2 were tuned so)
function M.next_runs(k, up_to)
  k, up_to = tonumber(k), tonumber(up_to)
  if not (k and up_to) or k >= up_to then return nil end
  return mmin(k + 2, up_to)
end

-- the smallest budget above a confirmed-too-rarely one that should pass M.POWER of scores: the
-- budget's runs pooled (ps: its search probe and confirmation) give the mean and the std; the
-- loss's slope in log(steps) comes from the search probes within 1.5x of it (least squares); the
-- mean is moved along that slope, the std kept (at least floor_std: M.spread). nil when there is no
-- falling slope or no budget up to 1.5x passes.
function M.predict_budget(ps, probes, target, alpha, k, floor_std)
  local count, m, std = pooled(ps)
  if std then std = mmax(std, tonumber(floor_std) or 0) end
  local s0 = ps[1] and ps[1].steps
  if count < 3 or not s0 then return nil end
  local n, sx, sy, sxx, sxy, seen, distinct = 0, 0, 0, 0, 0, {}, 0
  for _, P in ipairs(probes or {}) do
    if P.mean and P.steps and P.steps >= s0 / 1.5 and P.steps <= s0 * 1.5 then
      local x = log(P.steps)
      n, sx, sy, sxx, sxy = n + 1, sx + x, sy + P.mean, sxx + x * x, sxy + x * P.mean
      if not seen[P.steps] then seen[P.steps], distinct = true, distinct + 1 end
    end
  end
  if distinct < 2 then return nil end
  local slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
  if not (slope < 0) then return nil end
  for s = s0 + 1, mfloor(s0 * 1.5) do
    local p = M.pass_probability(m + slope * (log(s) - log(s0)), std, target, alpha, k)
    if p and p >= M.POWER then return s end
  end
end

-- the smallest budget strictly between an unaccepted budget and the accepted one above it that
-- should pass M.BACK_POWER of scores, or nil: each budget's runs pooled (lo_ps, hi_ps: a budget's
-- search probe and confirmation), the mean interpolated in log(steps) between the two, the std
-- the two budgets' within-budget std pooled, at least floor_std (M.spread) (a step-up predicted from
-- the lower budget's spread overshoots when the accepted budget's runs came out tighter: record 1
-- at proxy, 2026-12-06)
function M.between(lo_ps, hi_ps, target, alpha, k, floor_std)
  local n1, m1, s1 = pooled(lo_ps)
  local n2, m2, s2 = pooled(hi_ps)
  local a, b = lo_ps[1] and lo_ps[1].steps, hi_ps[1] and hi_ps[1].steps
  if not (s1 and s2 and a and b and a < b and m2 < m1) then return nil end
  local std = mmax(math.sqrt(((n1 - 1) * s1 ^ 2 + (n2 - 1) * s2 ^ 2) / (n1 + n2 - 2)), tonumber(floor_std) or 0)
  local slope = (m2 - m1) / (log(b) - log(a))
  for s = a + 1, b - 1 do
    local p = M.pass_probability(m1 + slope * (log(s) - log(a)), std, target, alpha, k)
    if p and p >= M.BACK_POWER then return s end
  end
end

-- the first intermediate validation step where the runs' losses (results' curve.val) already pass
-- the rule, or nil: a run not yet annealed there, so a budget of that many steps, its schedule
-- scaled, reaches at least as low; the search's guess below a passing first probe
function M.crossing(runs, target, alpha)
  local at = {}
  for _, r in ipairs(runs) do
    for _, v in ipairs(r.curve and r.curve.val or {}) do
      if type(v.val_loss) == "number" and v.step < (r.config and r.config.steps or math.huge) then
        at[v.step] = at[v.step] or {}
        table.insert(at[v.step], v.val_loss)
      end
    end
  end
  local steps = {}
  for s, xs in pairs(at) do if #xs == #runs then steps[#steps + 1] = s end end
  table.sort(steps)
  for _, s in ipairs(steps) do
    if M.judge(at[s], target, alpha, true).pass then return s end
  end
end

-- the next step count inside the bracket (lo fails, hi passes): interpolated in log(steps) on the
-- margins where both are known, kept within the bracket's middle half so that it always shrinks
local function inside(lo, hi)
  local f = 0.5
  if lo.margin and hi.margin and hi.margin > lo.margin then
    f = mmin(0.75, mmax(0.25, -lo.margin / (hi.margin - lo.margin)))
  end
  local s = mfloor(exp(log(lo.steps) + f * (log(hi.steps) - log(lo.steps))) + 0.5)
  return mmin(hi.steps - 1, mmax(lo.steps + 1, s))
end

-- a confirmation of probe P's budget (o.confirm(steps): fresh seeds) with the pooled pass probability
-- of both (o.power({P, C})), and whether it is accepted: it passes and that probability reaches
-- o.min_power (M.POWER). A recorded one (.recorded: a resumed search) that would be accepted is run
-- again by o.rerun(steps): the accepted confirmation's runs are the entry's times
function M.confirmation(P, o)
  local function run(f)
    local C = f(P.steps)
    C.steps = P.steps
    C.power = o.power and o.power({P, C}) or nil
    return C
  end
  local function accepted(C) return C.pass and (not C.power or C.power >= (o.min_power or M.POWER)) end
  local C = run(o.confirm)
  if accepted(C) and C.recorded and o.rerun then C = run(o.rerun) end
  return C, accepted(C)
end

-- the confirmation phase of M.search: from the passing probe hi up until a budget's search probe
-- and its confirmation both pass and, with o.power({probe, confirmation}) -> probability, the two
-- pooled pass the rule often enough (o.min_power, default M.POWER; the confirmation's .power).
-- The next budget: o.predict({probe, confirmation}, search probes) -> steps (M.predict_budget),
-- else up by 1, 2, 4, ... tolerances. A recorded confirmation (.recorded: a resumed search) that
-- would be accepted is run again by o.rerun(steps), as the accepted one's runs are the timed ones.
-- A step-up that overshot (o.between(last unaccepted, accepted) -> a budget more than a tolerance
-- below the accepted one) tries that budget once: its probe and confirmation must both pass and
-- be accepted, else the accepted budget stands (its confirmation then moved last: the accepted
-- confirmation is always the list's last). Returns that probe, its confirmation and, when a step
-- back was tried, {steps, taken}.
local function confirm_up(at, hi, o, tol, confirms, max_probes, order)
  if not o.confirm then return hi, nil end
  local unit = mmax(1, mfloor(tol * hi.steps))
  local function confirmed(P)   -- P's confirmation when accepted, else nil; and the confirmation
    if #order + #confirms >= max_probes then return nil end
    local C, ok = M.confirmation(P, o)
    confirms[#confirms + 1] = C
    return ok and C or nil, C
  end
  local last   -- the last budget stepped up from: {probe, its confirmation}
  for i = 1, o.confirm_tries or M.CONFIRM_TRIES do
    local C, ran
    if hi.pass then
      if #order + #confirms >= max_probes then break end
      C, ran = confirmed(hi)
      if C then
        local back = last and o.between and o.between(last, {hi, C})
        if back and back < hi.steps - unit and back > last[1].steps and #order + #confirms < max_probes then
          local Q = at(back)
          local QC = Q.pass and confirmed(Q)
          if QC then return Q, QC, {steps = back, taken = true} end
          for j = #confirms, 1, -1 do if confirms[j] == C then table.remove(confirms, j) break end end
          confirms[#confirms + 1] = C
          return hi, C, {steps = back, taken = false}
        end
        return hi, C
      end
      last = {hi, ran}
    end
    local nxt = hi.steps + unit * (1 << (i - 1))
    local guess = ran and o.predict and o.predict({hi, ran}, order)
    if guess and guess > hi.steps then nxt = guess end
    hi = at(nxt)
  end
  error(fmt("no budget confirmed: from %d steps up, none passed with fresh seeds too, often enough (%d confirmations)",
    confirms[1] and confirms[1].steps or hi.steps, #confirms), 0)
end

-- a cut that fails with an estimate near the limit (over M.CUT_CONFIRM) is run again with fresh
-- seeds, as a budget's confirmation is, and judged on both: it passes the rule if either set does
-- (either could be a score), its values and pass probability are the pooled ones
function M.confirm_cut(cut, o, confirms)
  if not (o.confirm and cut.power and not cut.pass and cut.power > M.CUT_CONFIRM) then return cut end
  local C = o.confirm(cut.steps)
  C.steps, C.power = cut.steps, o.power and o.power({cut, C}) or nil
  confirms[#confirms + 1] = C
  local n, mean, std, values = pooled({cut, C})
  return {steps = cut.steps, n = n, mean = mean, std = std, values = values, target = cut.target or C.target,
          schedule = cut.schedule, runs = cut.runs, train_time_ms = cut.train_time_ms, pass = cut.pass or C.pass,
          p = mmin(cut.p or 1, C.p or 1), power = C.power, confirmed = C}
end

-- the search's bracket: from a passing hi down (a curve crossing first, else by M.DOWN) or a
-- failing lo up (by M.UP, to max_steps) until both exist, then bisected (inside) to within tol;
-- at(steps) -> probe (run or cached)
local function narrow(at, cache, lo, hi, tol, max_steps)
  local P
  while not (lo and hi) do
    if hi then
      if hi.steps <= 1 then break end
      local guess = hi.crossing and hi.crossing <= 0.9 * hi.steps and not cache[hi.crossing] and hi.crossing
      P = at(guess or mmin(hi.steps - 1, mmax(1, mfloor(hi.steps * M.DOWN))))
    else
      if lo.steps >= max_steps then
        error(fmt("the target is not reached within %d steps (%d steps: mean %s, p = %s)", max_steps, lo.steps,
          lo.mean and fmt("%.4f", lo.mean) or "-", lo.p and fmt("%.3g", lo.p) or "-"), 0)
      end
      P = at(mmin(max_steps, mmax(lo.steps + 1, mceil(lo.steps * M.UP))))
    end
    if P.pass then hi = P else lo = P end
  end
  while lo and hi.steps - lo.steps > mmax(1, mfloor(tol * hi.steps)) do
    P = at(inside(lo, hi))
    if P.pass then hi = P else lo = P end
  end
  return lo, hi
end

-- search(probe, o) -> result | nil, message, probes. probe(steps) -> {pass, margin?, ...}
-- (M.judge's table; an error it raises ends the search); probe(nil) runs the recipe's own budget
-- and sets .steps. o: start (first budget; nil: the recipe's own), bracket ({lo, hi}: the first
-- two probes instead, e.g. the last bracket of a search cut by a time limit), tolerance, max_probes,
-- max_steps, cut, confirm (confirm(steps) -> a probe of the same budget with fresh seeds), power,
-- min_power, predict, between and rerun (confirm_up), on_confirmed (called with the result less its cut before the cut runs),
-- restarts (default M.RESTARTS) and on_restart(cut, budget): a cut whose runs pass the rule below a failing probe
-- show the budget is not the smallest that passes; the search goes on below the cut (bracketed by the largest failure
-- under it).
-- result: {steps = the smallest passing budget found (and confirmed), best = its probe, below =
-- the largest failing probe (or nil when even 1 step passes), probes = in order, cut = the probe
-- at floor(cut * steps), confirmed = the passing confirmation, confirms = every confirmation, restarts = how
-- many times a passing cut restarted it, step_back = {steps, taken} when confirm_up tried one}.
-- Confirmation: near the threshold a budget passes the rule only part of the time (run-to-run
-- noise), so the smallest budget that passed once may fail the next score; with o.confirm the
-- budget's runs with fresh seeds must pass too (and, with o.power, pass a score >= M.POWER of the
-- time as estimated from both), else the budget steps up (a passing search probe, then its
-- confirmation) for at most M.CONFIRM_TRIES budgets.
function M.search(probe, o)
  local tol, max_probes = o.tolerance or M.TOLERANCE, o.max_probes or M.MAX_PROBES
  local max_steps = o.max_steps
  local cache, order, confirms = {}, {}, {}
  if o.power or o.between then   -- o.power(ps, lists), o.between(lo, hi, lists): the search's runs so
    local power, between = o.power, o.between   -- far go with each estimate (M.spread)
    o = setmetatable({power = power and function(ps) return power(ps, {order, confirms, ps}) end,
                      between = between and function(a, b) return between(a, b, {order, confirms, a, b}) end}, {__index = o})
  end
  local function at(steps)
    if steps and cache[steps] then return cache[steps] end
    if #order >= max_probes then error(fmt("no budget found within %d probes", max_probes), 0) end
    local P = probe(steps)
    P.steps = steps or P.steps
    cache[P.steps], order[#order + 1] = P, P
    return P
  end
  local ok, res = pcall(function()
    local lo, hi, P
    for _, s in ipairs(o.bracket or {o.start or false}) do
      P = at(s or nil)
      if P.pass then hi = (hi and hi.steps < P.steps) and hi or P
      else lo = (lo and lo.steps > P.steps) and lo or P end
    end
    if lo and hi and lo.steps >= hi.steps then lo = nil end   -- noise: a pass below a failure
    max_steps = max_steps or 16 * (hi or lo).steps
    local restarts = o.restarts or M.RESTARTS
    for round = 0, restarts do
      lo, hi = narrow(at, cache, lo, hi, tol, max_steps)
      local confirmed, step_back
      hi, confirmed, step_back = confirm_up(at, hi, o, tol, confirms, max_probes, order)
      if o.on_confirmed then   -- stored before the cut's runs: a time limit there loses nothing
        o.on_confirmed({steps = hi.steps, best = hi, below = lo, probes = order, confirmed = confirmed, confirms = confirms,
                        step_back = step_back})
      end
      local cut = at(mmax(1, mfloor((o.cut or M.CUT) * hi.steps)))
      cut.power = o.power and o.power({cut}) or nil
      -- a cut passing under a failing probe: the probes are not monotone in the budget (noise made
      -- those between them fail) and the budget found is not the smallest that passes; the search
      -- goes on below the cut, from the largest failure under it. A passing cut above every failure
      -- (the budget stepped up for the pass probability) is loose, not misplaced: the result.
      if not (cut.pass and round < restarts and lo and cut.steps < lo.steps) then
        return {steps = hi.steps, best = hi, below = lo, probes = order, cut = M.confirm_cut(cut, o, confirms),
                confirmed = confirmed, confirms = confirms, restarts = round, step_back = step_back}
      end
      if o.on_restart then o.on_restart(cut, hi) end
      hi, lo = cut, nil
      for _, Q in ipairs(order) do
        if not Q.pass and Q.steps < cut.steps and (not lo or Q.steps > lo.steps) then lo = Q end
      end
    end
  end)
  if not ok then return nil, res, order end
  return res
end

-- Searches in progress are kept in the calibration file beside its entries, so that a search
-- cut by a time limit resumes (`--bracket auto`) from its bracket, reusing its probes:
-- calib.searches[card][scale][name] = {target, key = {recipe = sha-256 of the recipe's source,
-- data = the data id, stream = "random" or nil (fixed), runs = K or nil (3)}, probes = {probe records}, confirms = {...}}.
-- note: one finished probe (confirm: a confirmation); a search for another target, recipe source
-- or data starts afresh
local function same_key(a, b)
  if a == nil or b == nil then return a == b end
  return type(a) == "table" and type(b) == "table" and a.recipe == b.recipe and a.data == b.data
    and a.stream == b.stream and a.runs == b.runs
end

function M.note(calib, card, scale, name, target, rec, confirm, key)
  calib.searches = type(calib.searches) == "table" and calib.searches or {}
  local by_card = calib.searches[card] or {}
  calib.searches[card] = by_card
  by_card[scale] = by_card[scale] or {}
  local cur = by_card[scale][name]
  if type(cur) ~= "table" or cur.target ~= target or not same_key(cur.key, key) then
    cur = {target = target, key = key, probes = {}, confirms = {}}
    by_card[scale][name] = cur
  end
  table.insert(confirm and cur.confirms or cur.probes, rec)
end

-- whether a recorded search is of this target, recipe source and data (a record without its key
-- is never reused)
function M.same_search(search, target, key)
  return type(search) == "table" and search.key ~= nil and key ~= nil and search.target == target
    and same_key(search.key, key)
end

-- a recorded probe (confirm: confirmation) of this budget to reuse instead of running it again,
-- or nil (the search runs a recorded confirmation again only when it would be the accepted one)
function M.recorded(search, steps, confirm)
  local list = type(search) == "table" and (confirm and search.confirms or search.probes)
  for i = #(type(list) == "table" and list or {}), 1, -1 do
    local r = list[i]
    if r.steps == steps and type(r.val_losses) == "table" then return r end
  end
end

-- a probe (M.judge's table) from its record: the recorded verdict, no runs
function M.from_record(r, target, alpha)
  local P = M.judge(r.val_losses, target, alpha, true)
  P.pass, P.steps, P.target, P.recorded = r.pass == true, r.steps, target, true
  P.schedule = type(r.schedule) == "table" and r.schedule or nil
  P.train_time_ms = {mean = tonumber(r.train_time_ms_mean)}
  return P
end

-- the cut (its steps) still to run of a budget confirmed and stored whose cut a time limit stopped:
-- entry e's `tune` has no cut, and e is the tuned budget's (the budget written into the recipe:
-- its source's sha-256) for this key's recipe, data, stream and runs and this target (nil: the one
-- it was tuned to); nil otherwise (a whole search)
function M.pending_cut(e, key, target, k)
  local t = type(e) == "table" and type(e.tune) == "table" and e.tune
  if not t or type(t.cut) == "table" or not tonumber(t.steps) or e.steps ~= t.steps then return nil end
  if type(key) ~= "table" or e.recipe_sha256 ~= key.recipe or e.data ~= key.data then return nil end
  if (e.stream == "random") ~= (key.stream == "random") or (tonumber(t.runs) or 3) ~= k then return nil end
  if t.target ~= (target or t.target) then return nil end
  return mmax(1, mfloor(M.CUT * t.steps))
end

-- the step back a stored budget's recorded runs call for (its `tune`: the last unaccepted
-- confirmation below the accepted budget, each with its search probe; M.between), when none was
-- tried and it lies more than a tolerance below; nil otherwise. For a budget tuned before the
-- search stepped back (or whose cut a time limit stopped): run before its cut (tunecmd)
function M.step_back_of(t, alpha, k)
  if type(t) ~= "table" or type(t.step_back) == "table" then return nil end
  local C, P = type(t.confirmations) == "table" and t.confirmations or {}, type(t.probes) == "table" and t.probes or {}
  local acc, lo = C[#C], nil
  if not (type(acc) == "table" and acc.pass and acc.steps == t.steps) then return nil end
  for i = #C - 1, 1, -1 do
    if C[i].steps < t.steps and not (C[i].pass and (tonumber(C[i].pass_probability) or 0) >= M.POWER) then lo = C[i] break end
  end
  local function probe_at(s) for i = #P, 1, -1 do if P[i].steps == s then return P[i] end end end
  local pl, ph = lo and probe_at(lo.steps), probe_at(t.steps)
  if not (pl and ph) then return nil end
  local function runs(r) return {steps = r.steps, values = r.val_losses} end
  local back = M.between({runs(pl), runs(lo)}, {runs(ph), runs(acc)}, t.target, alpha, k, M.spread({P, C}, t.steps))
  if back and back < t.steps - mmax(1, mfloor((tonumber(t.tolerance) or M.TOLERANCE) * t.steps)) then return back end
end

-- a finished search is dropped (its record is the entry's `tune`)
function M.forget(calib, card, scale, name)
  local by_scale = type(calib.searches) == "table" and calib.searches[card] and calib.searches[card][scale]
  if not by_scale then return end
  by_scale[name] = nil
  if next(by_scale) == nil then calib.searches[card][scale] = nil end
  if next(calib.searches[card]) == nil then calib.searches[card] = nil end
  if next(calib.searches) == nil then calib.searches = nil end
end

-- the bracket of a search's probes: {the largest failing budget below the smallest passing one,
-- that one}, or nil without both
function M.bracket_of(probes)
  local hi, lo
  for _, p in ipairs(probes or {}) do if p.pass and (not hi or p.steps < hi) then hi = p.steps end end
  if not hi then return nil end
  for _, p in ipairs(probes) do if not p.pass and p.steps < hi and (not lo or p.steps > lo) then lo = p.steps end end
  if lo then return {lo, hi} end
end

-- the text of a recipe with `key = <number>` replaced inside its `<scale> = {` table (the first
-- such key at any depth of that table, as written by hand in tasks/record_NN/recipe.lua); values:
-- {key = number} (integers written as integers). Returns the new text or nil, message naming what was not found.
function M.rewrite(src, scale, values)
  local s0, open_end = src:find("\n(%s*)" .. scale .. "%s*=%s*{")
  if not s0 then return nil, fmt("no '%s = {' table in the recipe", scale) end
  local depth, i, close = 1, open_end + 1, nil
  while i <= #src do
    local c = src:sub(i, i)
    if c == "{" then depth = depth + 1 elseif c == "}" then depth = depth - 1 end
    if depth == 0 then close = i break end
    i = i + 1
  end
  if not close then return nil, fmt("the '%s' table is not closed", scale) end
  local body = src:sub(open_end + 1, close - 1)
  local keys = {}
  for k in pairs(values) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local n
    local v = values[k]
    local text = fmt("%.15g", v)   -- the shortest that reads back as v
    if tonumber(text) ~= v then text = fmt("%.17g", v) end
    body, n = body:gsub("%f[%w_]" .. k .. "(%s*=%s*)%-?%d[%d%.eE+-]*", function(eq) return k .. eq .. text end, 1)
    if n == 0 then return nil, fmt("no '%s = <number>' in the recipe's '%s' table", k, scale) end
  end
  return src:sub(1, open_end) .. body .. src:sub(close)
end

return M
