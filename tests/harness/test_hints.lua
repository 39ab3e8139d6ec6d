-- Hints against the recipes they lead to (speedrun.hintcheck): every `key = number` a hint states for a scale (after
-- `full:`, `proxy:`, `micro:` or in `proxy = {...}`, `full.steps = ...`) must be a value of that key
-- in the task's target recipe at that scale (any occurrence: `T` is in batch and val_batch), so
-- a re-tuned budget or a changed config cannot leave a hint stale. Keys the recipe's scale does
-- not hold (prose, other scales' notes) are not checked.
local T = require "speedrun.testing"
local taskmod = require "speedrun.task"

local hc = require "speedrun.hintcheck"
local claims = hc.claims

T.case("claims: scale markers and key = number pairs", function()
  local c = claims("full:  steps = 7000, warmup = 250     proxy: steps = 92,  warmdown = 26 -- proxy 91\n"
                   .. "full.steps = 1490\nproxy = {batch = {mode = \"seq\", T = 6144}, steps = 116, ...}\nno scale: steps = 3\n"
                   .. "full = {batch = {T = 8 * 49152}, micro_batch = 49152}")
  local got = {}
  for _, x in ipairs(c) do got[#got + 1] = ("%s.%s=%g"):format(x.scale, x.key, x.value) end
  T.eq(table.concat(got, " "), "full.steps=7000 full.warmup=250 proxy.steps=92 proxy.warmdown=26 full.steps=1490 proxy.T=6144 proxy.steps=116 full.micro_batch=49152")
end)

T.case("hints: the scale values they state are the target recipe's", function()
  local m = assert(taskmod.manifest())
  local checked, wrong, tasks_checked = 0, {}, 0
  for _, t in ipairs(m.tasks) do
    local cfg = assert(dofile(m.root .. "/" .. t.target .. "/recipe.lua")).config
    local before = checked
    for level = 1, 3 do
      local path = ("%s/level%d.md"):format(t.hints, level)
      local text = assert(T.read(m.root .. "/" .. path), path)
      local bad, n = hc.stale(text, cfg)
      checked = checked + n
      for _, c in ipairs(bad) do
        wrong[#wrong + 1] = ("%s:%d: %s %s = %g, but %s has %s"):format(path, c.line, c.scale, c.key, c.value,
          t.target, table.concat(c.vals, " or "))
      end
    end
    if checked > before then tasks_checked = tasks_checked + 1 end
  end
  T.ok(#wrong == 0, #wrong .. " stale values (`speedrun task sync-hints` sets them from the recipes):\n" .. table.concat(wrong, "\n"))
  T.ok(tasks_checked >= 10 and checked >= 80, ("the check is not vacuous: %d values in the hints of %d tasks"):format(checked, tasks_checked))
end)

T.case("sync: stale values set to the recipe's, the rest of the text as it was; ambiguous ones named", function()
  local cfg = {full = {steps = 3000, warmdown = 900}, proxy = {steps = 104, warmdown = 29, batch = {T = 8192}, val_batch = {T = 256}}}
  local text = "full:  steps = 3000, warmdown = 900        proxy: steps = 78, warmdown = 23\n"
            .. "- Config: proxy `steps = 78,\n  warmdown = 23` (prose 78 stays)\nproxy: T = 4096\n"
  local new, changes, unresolved = hc.sync(text, cfg)
  T.eq(new, "full:  steps = 3000, warmdown = 900        proxy: steps = 104, warmdown = 29\n"
            .. "- Config: proxy `steps = 104,\n  warmdown = 23` (prose 78 stays)\nproxy: T = 4096\n",
       "a claim is on its marker's line: the next line's warmdown is prose")
  T.eq(#changes, 3)
  T.eq(changes[1].line, 1) T.eq(changes[1].key, "steps") T.eq(changes[1].from, 78) T.eq(changes[1].to, 104)
  T.eq(changes[3].line, 2) T.eq(changes[3].key, "steps")
  T.eq(#unresolved, 1, "T is 8192 and 256 at proxy: which one is meant is not known")
  T.eq(unresolved[1].key, "T")
  local again, c2 = hc.sync(new, cfg)
  T.eq(again, new, "a synced text is left as it is")
  T.eq(#c2, 0)
end)

T.done()
