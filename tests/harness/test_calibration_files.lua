-- The committed calibration files (tasks/calibration-*.json) against the committed recipes: an
-- entry's budget, target and validation size must be the recipe's own at that scale, and a tuned
-- entry's schedule phases too, so a recipe edited without re-calibration (or a calibration file
-- committed without its tuned recipe) fails CI instead of scoring against stale references. The
-- staged files of a ladder move (tasks/staging/calibration-*.json, tasks/staging/README.md): every
-- tuned entry must still apply to its recipe (`calibrate --apply` would write the very source it
-- was measured with), so a recipe edited during the move fails CI until its record is re-tuned.
local T = require "speedrun.testing"
local json = require "speedrun.json"
local H = require "speedrun.harness_core"
local tune = require "speedrun.harness.tune"
local apply = require "speedrun.harness.apply"

local files = {}
local p = io.popen("ls ../tasks/calibration-*.json 2>/dev/null")
for path in p:lines() do files[#files + 1] = path end
p:close()

T.case("calibration files: every entry matches its recipe", function()
  T.ok(#files >= 1, "at least one committed calibration file")
  local checked = 0
  for _, path in ipairs(files) do
    local c = json.decode(assert(T.read(path), path))
    T.eq(c.schema, "speedrun.calibration/1", path)
    for card, scales in pairs(c.entries) do
      for scale, entries in pairs(scales) do
        for name, e in pairs(entries) do
          local rpath = "../tasks/" .. name .. "/recipe.lua"
          if T.read(rpath) then
            local cfg = assert(dofile(rpath)).config[scale]
            local where = ("%s: %s %s %s"):format(path, card, scale, name)
            T.eq(e.steps, cfg.steps, where .. ": steps")
            T.eq(e.target_val_loss, cfg.target_val_loss, where .. ": target")
            T.eq(e.val_tokens, cfg.val_tokens, where .. ": validation tokens")
            if type(e.tune) == "table" and e.tune.steps == e.steps and type(e.tune.schedule) == "table" then
              for key, v in pairs(e.tune.schedule) do T.eq(cfg[key], v, where .. ": tuned " .. key) end
            end
            checked = checked + 1
          end
        end
      end
    end
  end
  T.ok(checked >= 5, checked .. " entries checked")
end)

T.case("staged calibration files: every tuned entry still applies to its recipe", function()
  local p2 = io.popen("ls ../tasks/staging/calibration-*.json 2>/dev/null")
  local checked, staged = 0, 0
  for path in p2:lines() do
    staged = staged + 1
    local c = json.decode(assert(T.read(path), path))
    T.eq(c.schema, "speedrun.calibration/1", path)
    for card, scales in pairs(c.entries or {}) do
      for scale, entries in pairs(scales) do
        for name, e in pairs(entries) do
          local where = ("%s: %s %s %s"):format(path, card, scale, name)
          local src = assert(T.read("../tasks/" .. name .. "/recipe.lua"), where .. ": no recipe")
          local values, why = apply.values(e)
          T.ok(values, where .. ": " .. tostring(why))
          local new = assert(tune.rewrite(src, scale, values))
          T.eq(H.sha256(new), e.recipe_sha256, where .. ": the recipe changed since it was tuned (re-tune the record)")
          checked = checked + 1
        end
      end
    end
  end
  p2:close()
  T.ok(staged == 0 or checked >= 1, ("%d staged entries checked in %d files (none: no move in progress)"):format(checked, staged))
end)

-- `calibrate` exits 1 for a reference a score would not pass (calibfile.passes: cli.lua's
-- pass_or_fail over the entry), not for one run above the target: record 1's 10-run reference at
-- proxy passes on its mean (p ~ 7e-5) with single runs above 5.3 (its loss spikes)
T.case("a reference passes by the score's rule, not by each run", function()
  local calibfile = require "speedrun.harness.calibfile"
  local function entry(losses, p, completed)
    return {runs = #losses, completed = completed or #losses, val_losses = losses, target_val_loss = 5.3, p = p,
            all_valid = (function() for _, v in ipairs(losses) do if v > 5.3 then return false end end return true end)()}
  end
  local ok, why = calibfile.passes(entry({5.1, 5.2, 5.31, 5.0}, 0.004), 0.01)
  T.eq(ok, true); T.eq(why, "1 of 4 runs above the target; the mean passes, p = 0.004")
  ok, why = calibfile.passes(entry({5.29, 5.28, 5.25}, 0.094), 0.01)
  T.eq(ok, nil, "every run below the target, the mean not significantly: no pass")
  T.eq(why, "does not pass a score: p = 0.094, need < 0.01")
  ok, why = calibfile.passes(entry({5.29, 5.28, 5.25}, 0.094), 0.1)
  T.eq(ok, true, "alpha is the score's"); T.eq(why, "")
  ok, why = calibfile.passes(entry({5.0, 5.1, 5.0}, 1e-4, 2), 0.01)
  T.eq(ok, nil); T.eq(why, "1 of 3 runs did not complete")
  ok, why = calibfile.passes(entry({5.0, 5.1}, json.null), 0.01)
  T.eq(ok, nil); T.eq(why, "does not pass a score: p = n/a, need < 0.01")
  T.eq(calibfile.passes(entry({5.2}, json.null), 0.01), true, "one run: its validity")
  ok, why = calibfile.passes(entry({5.4}, json.null), 0.01)
  T.eq(ok, nil); T.eq(why, "its run is not valid")
end)

-- a plain calibrate times a reference with the runs its budget was tuned for (record 1: 10-run
-- scores), unless --runs says otherwise; an untuned one, or another budget, with the default
T.case("a plain calibrate's runs: the reference's tune, else the default", function()
  local calibfile = require "speedrun.harness.calibfile"
  local c = {entries = {C = {proxy = {record_01 = {steps = 841, tune = {steps = 841, runs = 10}},
                                      record_02 = {steps = 179, tune = {steps = 179}},
                                      record_03 = {steps = 120, tune = {steps = 108, runs = 5}}}}}}
  local function runs(o, name) return calibfile.plain_runs(o, tonumber(o.runs) or 3, c, "C", name) end
  T.eq(runs({scale = "proxy"}, "record_01"), 10, "tuned for 10-run scores")
  T.eq(runs({scale = "proxy", runs = "4"}, "record_01"), 4, "--runs decides")
  T.eq(runs({scale = "micro"}, "record_01"), 3, "other scales are not tuned for scores")
  T.eq(runs({scale = "proxy"}, "record_02"), 3, "a tune of the default 3")
  T.eq(runs({scale = "proxy"}, "record_03"), 3, "the budget moved since its tune")
  T.eq(runs({scale = "proxy"}, "record_04"), 3, "no entry")
end)

T.done()
