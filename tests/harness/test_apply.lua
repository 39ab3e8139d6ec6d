-- `speedrun calibrate --apply` (harness/apply.lua): a tuned entry's budget written back into its
-- recipe only when the result is the source the entry was measured with (recipe_sha256); a
-- recipe changed since, an entry without the hash or without a tune record is named, not written.
local T = require "speedrun.testing"
local json = require "speedrun.json"
local H = require "speedrun.harness_core"
local sq = T.shell_quote

local BEFORE = [[
-- a recipe
return {
  proxy = {
    steps = 92, lr = 1.8e-3, warmup = 3, warmdown = 26,
    target_val_loss = 5.5, val_tokens = 4096,
  },
  micro = {steps = 5, warmup = 1},
}
]]
-- written by hand: what the tuned budget (113 steps, warmup 4, warmdown 32, target 5.3) makes of it
local AFTER = [[
-- a recipe
return {
  proxy = {
    steps = 113, lr = 1.8e-3, warmup = 4, warmdown = 32,
    target_val_loss = 5.3, val_tokens = 4096,
  },
  micro = {steps = 5, warmup = 1},
}
]]
local CARD = "Test GPU (1 MiB)"

local function entry(sha)
  return {steps = 113, mean_ms = 1574, runs = 3, recipe_sha256 = sha,
          tune = {steps = 113, target = 5.3, schedule = {warmup = 4, warmdown = 32}, below = 112}}
end

-- a tasks folder with record_03 (and record_04 holding `text4`), a calibration file of entries
local function setup(name, entries, text4)
  local W = T.workspace(name, {})
  local tdir = W.tmp .. "/tasks"
  os.execute("rm -rf " .. sq(tdir) .. " && mkdir -p " .. sq(tdir .. "/record_03") .. " " .. sq(tdir .. "/record_04"))
  T.write(tdir .. "/record_03/recipe.lua", BEFORE)
  T.write(tdir .. "/record_04/recipe.lua", text4 or BEFORE)
  local path = W.tmp .. "/cal.json"
  T.write(path, json.encode({schema = "speedrun.calibration/1", entries = {[CARD] = {proxy = entries}}}))
  local function apply(extra)
    return W.run("calibrate --apply --calibration " .. sq(path) .. " --tasks-dir " .. sq(tdir) .. " " .. (extra or ""))
  end
  return tdir, apply
end

T.case("calibrate --apply: the tuned budget written when it gives the measured source, once", function()
  local tdir, apply = setup("apply-ok", {record_03 = entry(H.sha256(AFTER))})
  local rc, out = apply()
  T.eq(rc, 0, out)
  T.ok(out:find("record_03: 113 steps written", 1, true), out)
  T.eq(T.read(tdir .. "/record_03/recipe.lua"), AFTER)
  T.eq(T.read(tdir .. "/record_04/recipe.lua"), BEFORE, "a record without an entry is left alone")
  T.ok(not out:find("record_04", 1, true), "and not mentioned when no --tasks named it\n" .. out)
  rc, out = apply("--tasks 3")
  T.eq(rc, 0, out)
  T.ok(out:find("record_03: already the tuned recipe (113 steps)", 1, true), out)
  rc, out = apply("--tasks 3,4")
  T.eq(rc, 1, out)
  T.ok(out:find("record_04: not written: no tuned entry", 1, true), out)
end)

T.case("calibrate --apply: a recipe changed since its tuning, or an entry without the hash, is not written", function()
  local changed = BEFORE:gsub("lr = 1.8e%-3", "lr = 2e-3")
  local tdir, apply = setup("apply-changed", {record_03 = entry(H.sha256(AFTER)), record_04 = entry(nil)}, changed)
  T.write(tdir .. "/record_03/recipe.lua", changed)
  local rc, out = apply()
  T.eq(rc, 1, out)
  T.ok(out:find("record_03: not written: with the tuned budget (113 steps) its SHA-256 would be", 1, true)
       and out:find("changed since it was tuned", 1, true), out)
  T.ok(out:find("record_04: not written: its entry predates recipe_sha256", 1, true), out)
  T.eq(T.read(tdir .. "/record_03/recipe.lua"), changed, "left as it was")
  T.eq(T.read(tdir .. "/record_04/recipe.lua"), changed)
end)

T.case("calibrate --apply: the file's card and scale as --show picks them; junk names itself", function()
  local _, apply = setup("apply-card", {record_03 = entry(H.sha256(AFTER))})
  local rc, out = apply("--card 'Other GPU'")
  T.eq(rc, 2, out)
  T.ok(out:find("no entries for the card Other GPU", 1, true), out)
  rc, out = apply("--scale full")
  T.eq(rc, 2, out)
  T.ok(out:find("no entries at scale full", 1, true), out)
end)
