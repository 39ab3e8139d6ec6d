-- speedrun.harness.summary: a score's runs summed up (docs/harness.md "score"): the validation
-- losses' and train times' means and spreads, and the t-test of mean val_loss < target.
local json = require "speedrun.json"
local stats = require "speedrun.stats"

local M = {}

-- the t-test of mean val_loss < target; with ref (the task's target record's calibration entry:
-- its runs' val_loss_std), the spread is pooled with the record's: s^2 = ((n-1) s_runs^2 + (m-1)
-- s_ref^2) / (n+m-2), df = n+m-2. A recipe whose seeds barely differ (its own generator seeded
-- with a constant: the training batches are the same for every seed) cannot pass just under the
-- target on a spread of ~0; an honest one gains the degrees of freedom.
local function ttest(losses, target, ref)
  local tl = stats.ttest_less(losses, target)
  local n, sr_, m = #losses, ref and ref.val_loss_std, ref and (ref.runs or (ref.val_losses and #ref.val_losses))
  local out = {target = target, t = tl.t, p = tl.p, df = n - 1, alternative = "mean val_loss < target"}
  if n < 1 or type(sr_) ~= "number" or sr_ <= 0 or type(m) ~= "number" or m < 2 or type(tl.mean) ~= "number" then
    return tl, out
  end
  local sn = n > 1 and tl.std or 0
  local sp = math.sqrt(((n - 1) * sn * sn + (m - 1) * sr_ * sr_) / (n + m - 2))
  out.df = n + m - 2
  out.t = (tl.mean - target) / (sp / math.sqrt(n))
  out.p = stats.t_cdf(out.t, out.df)
  out.pooled = {std = sp, ref_std = sr_, ref_runs = m}
  return tl, out
end

-- summarize(runs, target [, ref]) -> {n, completed, all_completed, val_loss, train_time_ms, ttest}; ref:
-- the task's target record's calibration entry (its spread pools into the t-test)
function M.summarize(runs, target, ref)
  local losses, times, all_ok = {}, {}, true
  for _, r in ipairs(runs) do
    if r.valid or r.status == "invalid" then
      losses[#losses + 1] = r.metrics.val_loss
      times[#times + 1] = r.metrics.train_time_ms
    end
    if not (r.valid or r.status == "invalid") then all_ok = false end
  end
  local tl, tv = ttest(losses, target, ref)
  local tt = stats.ttest_less(times, 0)
  return {n = #runs, completed = #losses, all_completed = all_ok, val_loss = {mean = tl.mean, std = tl.std,
          values = json.array(losses)}, train_time_ms = {mean = tt.mean, std = tt.std, values = json.array(times)},
          ttest = tv}
end

return M
