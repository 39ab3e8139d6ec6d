-- speedrun.agent.hints: the benchmark's six hint regimes (reference/benchmark.md §5-§6: none, L1,
-- L2, L3, L1+L2, L1+L2+L3) as names, and their hint levels. A regime's levels are the hint spec a
-- run's config carries (`--hint 1,2`): speedrun.task.hint joins hints/task_NN/levelK.md for each
-- level into the coder prompt's "# Ideas" section; "none" gives no hint (the coder's zero-hint
-- prompt asks for a plan first). docs/agent.md "A study from the command line".
local M = {}

-- the regimes, in the paper's order, with the levels they give (nil: no hint)
M.ORDER = {"none", "L1", "L2", "L3", "L1+L2", "L1+L2+L3"}
M.LEVELS = {none = nil, L1 = "1", L2 = "2", L3 = "3", ["L1+L2"] = "1,2", ["L1+L2+L3"] = "1,2,3"}

-- a regime name from its user spelling: "none", "L1", "l1+l2", "1+2", "1,2,3", "all" (= L1+L2+L3);
-- nil, message when it is none of the six
function M.regime(s)
  s = tostring(s or ""):gsub("%s", "")
  local low = s:lower()
  if low == "none" or low == "0" or low == "" then return "none" end
  if low == "all" then return "L1+L2+L3" end
  local lv = {}
  for part in low:gmatch("[^+,]+") do
    local n = part:match("^l?([123])$")
    if not n then return nil, "unknown hint regime '" .. s .. "' (known: " .. table.concat(M.ORDER, ", ") .. ")" end
    lv[#lv + 1] = "L" .. n
  end
  local name = table.concat(lv, "+")
  if not M.LEVELS[name] then
    return nil, "unknown hint regime '" .. s .. "' (known: " .. table.concat(M.ORDER, ", ") .. ")"
  end
  return name
end

-- the regimes of a comma-separated list ("none,L1,L1+L2"; "all6" = the paper's six); nil, message
function M.list(s)
  if s == "all6" then return {table.unpack(M.ORDER)} end
  local out, seen = {}, {}
  -- "L1+L2" holds no comma, so a comma always separates regimes
  for part in tostring(s):gmatch("[^,]+") do
    local r, err = M.regime(part)
    if not r then return nil, err end
    if not seen[r] then out[#out + 1], seen[r] = r, true end
  end
  if #out == 0 then return nil, "no hint regime in '" .. tostring(s) .. "'" end
  return out
end

-- the hint spec of a regime for a run's config ("1,2"), or nil for none
function M.levels(regime) return M.LEVELS[regime] end

-- the regime of a run's hint spec ("1,2" -> "L1+L2"; nil or json null -> "none")
function M.of_spec(spec)
  if type(spec) ~= "string" and type(spec) ~= "number" then return "none" end
  return M.regime((tostring(spec):gsub(",", "+"))) or tostring(spec)
end

return M
