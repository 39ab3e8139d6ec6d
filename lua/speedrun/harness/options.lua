-- speedrun.harness.options: the command line of `speedrun train`, `score` and `calibrate`, parsed
-- and checked before any work: a value never taken from the next flag, numbers that are numbers
-- (integers where a count is meant, positive where zero or less means nothing), a known scale
-- (score and calibrate: the scales calibration knows; train: also a name of the recipe's own, which
-- the child checks before any step), a size with a unit, a stream policy (fixed or random). Errors are usage errors (exit 2).
local M = {}
local fmt = string.format

M.SCALES = {micro = true, demo = true, proxy = true, full = true, auto = true}

function M.parse_size(s)
  if not s then return nil end
  local n, unit = tostring(s):match("^(%d+%.?%d*)%s*([kKmMgGtT]?)[iI]?[bB]?$")
  if not n then return nil end
  local mult = ({[""] = 1, k = 2 ^ 10, m = 2 ^ 20, g = 2 ^ 30, t = 2 ^ 40})[unit:lower()]
  local v = math.floor(tonumber(n) * mult)
  return v > 0 and v or nil
end

-- spec: {name = "value"|"flag"}; returns opts, positional | nil, msg
function M.parse(args, spec)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a:sub(1, 2) == "--" then
      local name, val = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local kind = spec[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then
        if val then return nil, "option --" .. name .. " takes no value" end
        opts[name] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if not val or val:sub(1, 2) == "--" then return nil, "option --" .. name .. " needs a value" end
        end
        opts[name] = val
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

-- a record list ("1,2,3", "1-5", "1,7,9-11") as numbers in order; nil when a part is not a
-- positive integer or an ascending range of them
function M.parse_list(s)
  local out = {}
  for part in (tostring(s) .. ","):gmatch("([^,]*),") do
    local a, b = part:match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
    a, b = tonumber(a), tonumber(b)
    local one = tonumber(part:match("^%s*(%d+)%s*$"))
    if a and b and 0 < a and a <= b then for i = a, b do out[#out + 1] = i end
    elseif one and one > 0 then out[#out + 1] = one
    else return nil end
  end
  return out
end

-- numeric options: {kind, lowest (inclusive unless open), open?, highest?}
local NUMERIC = {
  steps = {"integer", 1}, ["probe-jobs"] = {"integer", 1}, ["runs-up-to"] = {"integer", 2}, seed = {"integer", 0}, runs = {"integer", 1}, threads = {"integer", 1},
  ["val-every"] = {"integer", 1}, task = {"integer", 1}, ["val-tokens"] = {"integer", 1},
  ["time-limit"] = {"number", 0, true}, ["time-budget"] = {"number", 0, true}, target = {"number", 0, true}, alpha = {"number", 0, true, 1},
}

local function check_number(name, s, rule)
  local v = tonumber(s)
  local kind, lo, open, hi = rule[1], rule[2], rule[3], rule[4]
  local what = kind == "integer" and (lo >= 1 and "a positive integer" or "an integer >= " .. lo)
                or (hi and fmt("a number between %g and %g", lo, hi) or fmt("a number above %g", lo))
  if not v or v ~= v or v == math.huge or v == -math.huge then return fmt("--%s must be %s, not '%s'", name, what, s) end
  if kind == "integer" and v ~= math.floor(v) then return fmt("--%s must be %s, not '%s'", name, what, s) end
  if (open and v <= lo) or (not open and v < lo) or (hi and v >= hi) then
    return fmt("--%s must be %s, not '%s'", name, what, s)
  end
end

-- nil when the options are well-formed, else the usage error; own_scales: the command takes a
-- scale the recipe names itself (train)
function M.check(o, own_scales)
  for name, rule in pairs(NUMERIC) do
    if o[name] ~= nil then
      local err = check_number(name, o[name], rule)
      if err then return err end
    end
  end
  if o.scale and not M.SCALES[o.scale] and not (own_scales and o.scale:match("^[%a_][%w_]*$")) then
    return fmt("--scale must be micro, demo, proxy, full or auto%s, not '%s'",
               own_scales and " (or a scale the recipe names)" or "", o.scale)
  end
  for _, name in ipairs {"mem-limit", "gpu-mem-limit"} do
    if o[name] and not M.parse_size(o[name]) then
      return fmt("--%s must be a size such as 4G or 512M, not '%s'", name, o[name])
    end
  end
  if o.tasks ~= nil and not M.parse_list(o.tasks) then
    return fmt("--tasks must list record numbers and ascending ranges, e.g. 1,2,3 or 1-5 or 1,7,9-11, not '%s'", tostring(o.tasks))
  end
  if o.stream ~= nil and o.stream ~= "fixed" and o.stream ~= "random" then
    return fmt("--stream must be fixed or random, not '%s'", tostring(o.stream))
  end
  if o.task and (o.target or o["val-tokens"]) then
    return "--task takes the target and the validation size from the task's target record: drop --target and --val-tokens"
  end
end

return M
