-- Hints against the recipes they lead to: every `key = number` a hint states for a scale (after
-- `full:`, `proxy:`, `micro:` or in `proxy = {...}`, `full.steps = ...`) must be a value of that key
-- in the task's target recipe at that scale (any occurrence: `T` is in batch and val_batch), so
-- a re-tuned budget or a changed config cannot leave a hint stale. Keys the recipe's scale does
-- not hold (prose, other scales' notes) are not checked.
local T = require "speedrun.testing"
local taskmod = require "speedrun.task"

local SCALES = {full = true, proxy = true, micro = true}

-- every number stored under key anywhere in the table t
local function values_of(t, key, out)
  out = out or {}
  for k, v in pairs(t) do
    if k == key and type(v) == "number" then out[#out + 1] = v
    elseif type(v) == "table" then values_of(v, key, out) end
  end
  return out
end

-- {scale, key, value, line} for each `key = number` after a scale marker on a line of text
local function claims(text)
  local out = {}
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local code = line:gsub("%-%-.*$", "")     -- Lua comments in pseudocode carry prose
    local marks = {}
    for pos, scale in code:gmatch("()(%a+)%s*[:=.]") do
      if SCALES[scale] and not code:sub(1, pos - 1):match("[%w_]$") then marks[#marks + 1] = {pos = pos, scale = scale} end
    end
    for i, m in ipairs(marks) do
      local seg = code:sub(m.pos, marks[i + 1] and marks[i + 1].pos - 1 or #code)
      for key, num, after in seg:gmatch("([%a_][%w_]*)%s*=%s*(%-?[%d][%d%.eE+-]*)%s*(.?)") do
        local v = tonumber(num)   -- an expression (8 * 49152) is not a stated value
        if v and key ~= m.scale and not after:match("[%*/+%-^]") then
          out[#out + 1] = {scale = m.scale, key = key, value = v, line = n}
        end
      end
    end
  end
  return out
end

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
      for _, c in ipairs(claims(text)) do
        local vals = cfg[c.scale] and values_of(cfg[c.scale], c.key) or {}
        if #vals > 0 then
          checked = checked + 1
          local ok = false
          for _, v in ipairs(vals) do if math.abs(v - c.value) <= 1e-9 * math.max(1, math.abs(v)) then ok = true end end
          if not ok then
            wrong[#wrong + 1] = ("%s:%d: %s %s = %g, but %s has %s"):format(path, c.line, c.scale, c.key, c.value,
              t.target, table.concat(vals, " or "))
          end
        end
      end
    end
    if checked > before then tasks_checked = tasks_checked + 1 end
  end
  T.ok(#wrong == 0, #wrong .. " stale values:\n" .. table.concat(wrong, "\n"))
  T.ok(tasks_checked >= 10 and checked >= 80, ("the check is not vacuous: %d values in the hints of %d tasks"):format(checked, tasks_checked))
end)

T.done()
