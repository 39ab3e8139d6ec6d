-- speedrun.harness.apply: `speedrun calibrate --apply`: the budgets a tune search wrote into the
-- recipes on the machine that ran it (steps, schedule, target: tune.rewrite), written again here
-- from the calibration file's entries. A recipe is written only when the result is, byte for byte,
-- the source the entry was measured with (its recipe_sha256): the file then vouches for the
-- recipe in the checkout, and a recipe changed since its tuning is named, not overwritten.
local H = require "speedrun.harness_core"
local tune = require "speedrun.harness.tune"
local util = require "speedrun.util"
local output = require "speedrun.harness.output"

local M = {}
local fmt = string.format

-- the values a tuned entry puts into its recipe's scale table (for tune.rewrite), or nil and why it has none
function M.values(e)
  local t = type(e) == "table" and e.tune
  if type(t) ~= "table" or type(t.steps) ~= "number" then return nil, "no tuned entry", "none" end
  if type(e.recipe_sha256) ~= "string" then return nil, "its entry predates recipe_sha256: nothing vouches for a rewrite" end
  local values = {steps = t.steps, target_val_loss = tonumber(t.target)}
  for k, v in pairs(type(t.schedule) == "table" and t.schedule or {}) do values[k] = v end
  return values
end

-- one recipe: what was done (a line) and whether it failed (not written, or "none": nothing to write)
local function apply_one(it, e, scale)
  local values, why, none = M.values(e)
  if not values then return fmt("%s: not written: %s", it.name, why), none or true end
  local src = util.read_file(it.recipe)
  if not src then return fmt("%s: not written: %s cannot be read", it.name, it.recipe), true end
  if H.sha256(src) == e.recipe_sha256 then return fmt("%s: already the tuned recipe (%d steps)", it.name, values.steps), false end
  local new, werr = tune.rewrite(src, scale, values)
  if not new then return fmt("%s: not written: %s", it.name, werr), true end
  local sha = H.sha256(new)
  if sha ~= e.recipe_sha256 then
    return fmt("%s: not written: with the tuned budget (%d steps) its SHA-256 would be %s, the entry's is %s: the recipe "
               .. "changed since it was tuned (re-tune it)", it.name, values.steps, sha:sub(1, 16), e.recipe_sha256:sub(1, 16)), true
  end
  output.write_file(it.recipe, new)
  return fmt("%s: %d steps written (the source the entry was measured with)", it.name, values.steps), false
end

-- entries: the card's entries at scale; items: {name, recipe} (calibrate's); named: the items were
-- asked for (--tasks), so one without a tuned entry is an error. Prints a line each; returns the rc
function M.run(entries, scale, items, named)
  local rc = 0
  for _, it in ipairs(items) do
    local e = entries[it.name]
    local line, failed = apply_one(it, e, scale)
    if failed == true or (failed == "none" and named) then rc = 1 end
    if e or named then print(line) end
  end
  return rc
end

return M
