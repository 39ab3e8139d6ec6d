-- speedrun.harness.state: a digest of the recipe's state, in the child (docs/harness.md
-- "Host-owned measurement"): every tensor reachable from the recipe's ctx and table, through
-- tables (keys, values, metatables) and the upvalues of functions (so also the recipe's globals
-- and what its closures keep), library modules excluded. The digest is the checksum of every
-- such tensor in the order found, and the in-place write counters of those that require grad
-- (a change undone before the end is still seen). Taken before the final validation and compared
-- after its checks (restricted runs): eval must not change the recipe's state.
local H = require "speedrun.harness_core"
local sr = require "speedrun"

local checksum, version, is_tensor = H.checksum, H.version, sr.is_tensor
local getmetatable, getupvalue = debug.getmetatable, debug.getupvalue
local type, next, fmt = type, next, string.format

local M = {}

-- tables not walked: the loaded modules (the library, shared by every recipe) and _G
local function library()
  local skip = {[_G] = true}
  for _, m in next, package.loaded do if type(m) == "table" then skip[m] = true end end
  return skip
end

-- the tensors reachable from the roots, in the order found (depth first)
local function reachable(roots, skip)
  local seen, out, stack = {}, {}, {}
  for i = #roots, 1, -1 do stack[#stack + 1] = roots[i] end
  while #stack > 0 do
    local v = stack[#stack]
    stack[#stack] = nil
    local t = type(v)
    if (t == "table" or t == "function" or t == "userdata") and not seen[v] and not skip[v] then
      seen[v] = true
      if is_tensor(v) then out[#out + 1] = v
      elseif t == "table" then
        for k, x in next, v do stack[#stack + 1] = x; stack[#stack + 1] = k end
        stack[#stack + 1] = getmetatable(v)
      elseif t == "function" then
        for i = 1, 255 do
          local name, x = getupvalue(v, i)
          if not name then break end
          stack[#stack + 1] = x
        end
      end
    end
  end
  return out
end

-- the digest of the state reachable from roots: {tensors =, sum =, versions =}
function M.digest(roots)
  local ts = reachable(roots, library())
  local h, vs = 0, 0
  for i, t in next, ts do
    h = (h * 31 + checksum(t) + i) & 0x7fffffffffffffff
    if t.requires_grad then vs = vs + version(t) end
  end
  return {tensors = #ts, sum = h, versions = vs}
end

-- why digest b differs from a, or nil
function M.changed(a, b)
  if a.tensors ~= b.tensors then return fmt("the recipe's state held %d tensors before validation and %d after", a.tensors, b.tensors) end
  if a.sum ~= b.sum then return "tensors of the recipe's state changed values" end
  if a.versions ~= b.versions then return "parameters were written in place (and restored)" end
end

return M
