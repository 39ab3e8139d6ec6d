-- speedrun.hintcheck: the numbers a hint states about a scale (`proxy: steps = 92`, `full.steps =
-- 1490`, `proxy = {... steps = 116}`) against its task's target recipe: which are stale, and the
-- hint's text with each stale one set to the recipe's value (`speedrun task sync-hints`), so a
-- re-tune that moves every record's budget moves the hints with it. Prose numbers (`proxy 76`) are
-- not claims: hints state budgets as `key = number` after a scale marker (tests/harness/test_hints.lua).
local M = {}
local fmt = string.format

local SCALES = {full = true, proxy = true, micro = true}

-- every number stored under key anywhere in the table t
function M.values_of(t, key, out)
  out = out or {}
  for k, v in pairs(t) do
    if k == key and type(v) == "number" then out[#out + 1] = v
    elseif type(v) == "table" then M.values_of(v, key, out) end
  end
  return out
end

-- {scale, key, value, line, at, len} for each `key = number` after a scale marker on a line of text
-- (at, len: where the number's text is in text)
function M.claims(text)
  local out = {}
  local n, base = 0, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local code = line:gsub("%-%-.*$", "")     -- Lua comments in pseudocode carry prose
    local marks = {}
    for pos, scale in code:gmatch("()(%a+)%s*[:=.`]") do
      if SCALES[scale] and not code:sub(1, pos - 1):match("[%w_]$") then marks[#marks + 1] = {pos = pos, scale = scale} end
    end
    for i, m in ipairs(marks) do
      local seg = code:sub(m.pos, marks[i + 1] and marks[i + 1].pos - 1 or #code)
      for key, at, num, after in seg:gmatch("([%a_][%w_]*)%s*=%s*()(%-?[%d][%d%.eE+-]*)%s*(.?)") do
        local v = tonumber(num)   -- an expression (8 * 49152) is not a stated value
        if v and key ~= m.scale and not after:match("[%*/+%-^]") then
          out[#out + 1] = {scale = m.scale, key = key, value = v, line = n, at = base + m.pos + at - 1, len = #num}
        end
      end
    end
    base = base + #line + 1
  end
  return out
end

local function agrees(vals, x)
  for _, v in ipairs(vals) do if math.abs(v - x) <= 1e-9 * math.max(1, math.abs(v)) then return true end end
  return false
end

-- the claims of text that the recipe's config (recipe.config: {full =, proxy =, micro =}) contradicts,
-- each with vals, the recipe's values of its key at its scale; keys a scale does not hold are not checked.
-- Also returns how many claims were checked.
function M.stale(text, cfg)
  local out, checked = {}, 0
  for _, c in ipairs(M.claims(text)) do
    local vals = cfg[c.scale] and M.values_of(cfg[c.scale], c.key) or {}
    if #vals > 0 then
      checked = checked + 1
      if not agrees(vals, c.value) then c.vals = vals; out[#out + 1] = c end
    end
  end
  return out, checked
end

-- text with each stale claim set to the recipe's value (written as the recipe's number reads:
-- %.15g); a claim whose key has several values at its scale is left, named in the third result.
-- Returns the new text, the changes {line, scale, key, from, to}, the unresolved claims.
function M.sync(text, cfg)
  local bad = M.stale(text, cfg)
  local changes, unresolved = {}, {}
  table.sort(bad, function(a, b) return a.at > b.at end)   -- from the end: earlier positions stay valid
  for _, c in ipairs(bad) do
    local distinct = {}
    for _, v in ipairs(c.vals) do distinct[fmt("%.15g", v)] = true end
    local only, count = nil, 0
    for k in pairs(distinct) do only, count = k, count + 1 end
    if count == 1 then
      text = text:sub(1, c.at - 1) .. only .. text:sub(c.at + c.len)
      table.insert(changes, 1, {line = c.line, scale = c.scale, key = c.key, from = c.value, to = tonumber(only)})
    else
      table.insert(unresolved, 1, c)
    end
  end
  return text, changes, unresolved
end

return M
