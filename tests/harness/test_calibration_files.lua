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

T.done()
