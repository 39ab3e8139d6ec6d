-- speedrun.harness.summary: a score's runs summed up (docs/harness.md "score"): the validation
-- losses' and train times' means and spreads, and the t-test of mean val_loss < target.
local json = require "speedrun.json"
local stats = require "speedrun.stats"

local M = {}

-- the t-test of mean val_loss < target; with ref (the task's target record's calibration entry),
-- the spread is at least the record's calibrated one: s = max(s_runs, s_ref), df = n - 1. A recipe
-- whose seeds barely differ (its own generator seeded with a constant: the training batches are
-- the same for every seed) can neither pass just under the target on a spread of ~0 nor narrow
-- the record's (pooling would: sqrt(1/2) s_ref with 3 runs each)
local function ttest(losses, target, ref)
  local tl = stats.ttest_less(losses, target)
  local n, s_ref = #losses, ref and ref.val_loss_std
  local out = {target = target, t = tl.t, p = tl.p, df = n - 1, alternative = "mean val_loss < target"}
  if n < 2 or type(s_ref) ~= "number" or s_ref <= 0 or type(tl.mean) ~= "number" or type(tl.std) ~= "number" then
    return tl, out
  end
  local s = math.max(tl.std, s_ref)
  out.t = (tl.mean - target) / (s / math.sqrt(n))
  out.p = stats.t_cdf(out.t, out.df)
  out.spread = {runs = tl.std, ref = s_ref, used = s}
  return tl, out
end

-- summarize(runs, target [, ref]) -> {n, completed, all_completed, val_loss, train_time_ms,
-- warmup_counted_ms (each run's counted warm-up, the part of its train time: harness/steps.lua), ttest}; ref:
-- the task's target record's calibration entry (its spread pools into the t-test)
function M.summarize(runs, target, ref)
  local losses, times, warm, all_ok = {}, {}, {}, true
  for _, r in ipairs(runs) do
    if r.valid or r.status == "invalid" then
      losses[#losses + 1] = r.metrics.val_loss
      times[#times + 1] = r.metrics.train_time_ms
      warm[#warm + 1] = r.metrics.warmup_counted_ms
    end
    if not (r.valid or r.status == "invalid") then all_ok = false end
  end
  local tl, tv = ttest(losses, target, ref)
  local tt = stats.ttest_less(times, 0)
  return {n = #runs, completed = #losses, all_completed = all_ok, val_loss = {mean = tl.mean, std = tl.std,
          values = json.array(losses)}, train_time_ms = {mean = tt.mean, std = tt.std, values = json.array(times)},
          warmup_counted_ms = #warm == #times and json.array(warm) or json.null, ttest = tv}
end

-- the score's rule over its runs (cli.lua's verdict, calibfile.passes for a reference): "incomplete"
-- when a run did not complete, "one" for one run (it cannot show p < alpha), "pass" when the mean
-- val_loss is significantly below the target (p < alpha), else "fail"
function M.rule(all_completed, completed, p, alpha)
  if not all_completed then return "incomplete" end
  if completed < 2 then return "one" end
  if p and p < alpha then return "pass" end
  return "fail"
end

return M
