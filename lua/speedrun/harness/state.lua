-- speedrun.harness.state: what eval may not change, in the child (docs/harness.md "Host-owned
-- measurement"), and the library tables no recipe may change.
-- The recipe's state: everything reachable from the recipe's ctx and table, through tables (keys,
-- values, metatables), the upvalues of functions (so also the recipe's globals and what its
-- closures keep) and the stacks of coroutines, library modules excluded. Its picture (M.picture) is
-- every value found, in the order found (strings, numbers bit for bit, tables and functions by
-- identity), with each tensor's in-place write counter, requires_grad and gradient (by identity,
-- with its counter): cheap (no device work), taken after
-- every eval call of the final validation and its checks (restricted runs) and compared with the
-- one before it, so a memory that eval fills and empties again before the end is seen. The digest
-- (M.digest) adds every tensor's checksum: taken before the final validation, compared after the
-- checks.
-- The library (M.seal_library, M.library_changed): the tables of the modules a recipe may load and
-- the tables reachable from their fields, as they were when the sandbox sealed them; compared where
-- the clock stops and after every eval call, so a recipe cannot keep state there or replace a
-- function that code run off the clock would call.
local H = require "speedrun.harness_core"
local sr = require "speedrun"

local checksum, version, serial, is_tensor = H.checksum, H.version, H.serial, sr.is_tensor
local getmetatable, getupvalue, getlocal, getinfo = debug.getmetatable, debug.getupvalue, debug.getlocal, debug.getinfo
local type, next, fmt, rawequal, tostring = type, next, string.format, rawequal, tostring
local mtype, spack = math.type, string.pack

local M = {}

-- the library's folder, as Lua names its chunks ("@/.../lua/"): its functions' upvalues are the
-- library's own (caches it may fill during eval), not the recipe's state
local LIB_SOURCE = "@" .. (package.searchpath("speedrun.harness.state", package.path) or ""):gsub("speedrun/harness/state%.lua$", "")
local ssub = string.sub

-- tables not walked: the loaded modules (the library, shared by every recipe) and _G
local function library()
  local skip = {[_G] = true}
  for _, m in next, package.loaded do if type(m) == "table" then skip[m] = true end end
  return skip
end

local lib_fns   -- once sealed (M.seal_library): the library's functions as they were then

-- a function of the library, whose upvalues are the library's (caches it may fill during eval),
-- not the recipe's state: once sealed, one that existed then (a closure the library makes later,
-- K.op's or autograd.Function's around a recipe's functions, is walked: it holds recipe values);
-- before, any function defined in the library's folder
-- (the harness's own functions, the sandbox's among them, are never the recipe's: their upvalues
-- that are, the sandbox's require cache, are roots of their own: child.lua)
local HARNESS_SOURCE = LIB_SOURCE .. "speedrun/harness/"
local function library_function(f)
  local src = getinfo(f, "S").source
  if ssub(src, 1, #HARNESS_SOURCE) == HARNESS_SOURCE then return true end
  if lib_fns then return lib_fns[f] == true end
  return ssub(src, 1, #LIB_SOURCE) == LIB_SOURCE
end

-- pushes f's upvalues (a function's) onto stack
local function push_upvalues(f, stack)
  for i = 1, 255 do
    local name, x = getupvalue(f, i)
    if not name then break end
    stack[#stack + 1] = x
  end
end

-- the values reachable from the roots, in the order found (depth first), into pic (an array);
-- tensors also into ts
local function walk(roots, skip, pic, ts)
  local seen, stack = {}, {}
  for i = #roots, 1, -1 do stack[#stack + 1] = roots[i] end
  while #stack > 0 do
    local v = stack[#stack]
    stack[#stack] = nil
    pic[#pic + 1] = v
    local t = type(v)
    if (t == "table" or t == "function" or t == "userdata" or t == "thread") and not seen[v] and not skip[v] then
      seen[v] = true
      if is_tensor(v) then   -- its write counter, whether it requires grad, its gradient (which one, and its counter)
        ts[#ts + 1] = v
        local g = v.grad
        pic[#pic + 1] = version(v)
        pic[#pic + 1] = v.requires_grad
        pic[#pic + 1] = g and serial(g) or false
        if g then ts[#ts + 1] = g; pic[#pic + 1] = version(g) end
      elseif t == "table" then
        for k, x in next, v do stack[#stack + 1] = x; stack[#stack + 1] = k end
        stack[#stack + 1] = getmetatable(v)
      elseif t == "function" and not library_function(v) then
        push_upvalues(v, stack)
      elseif t == "thread" then
        for level = 0, 250 do
          local info = getinfo(v, level, "f")
          if not info then break end
          stack[#stack + 1] = info.func
          for i = 1, 255 do
            local name, x = getlocal(v, level, i)
            if not name then break end
            stack[#stack + 1] = x
          end
        end
      end
    end
  end
end

-- the picture of the state reachable from roots (no device work)
function M.picture(roots)
  local pic, ts = {}, {}
  walk(roots, library(), pic, ts)
  return pic, ts
end

-- x and y the same value: one object, one string, or one number bit for bit (an integer and a float
-- of equal value, 0.0 and -0.0, NaNs with different payloads are different values: each a channel)
local function same(x, y)
  if type(x) ~= "number" then return rawequal(x, y) end
  if type(y) ~= "number" or mtype(x) ~= mtype(y) then return false end
  if mtype(x) == "integer" then return x == y end   -- exact (as doubles, 2^62 and 2^62 + 1 are one)
  return spack("<d", x) == spack("<d", y)
end

-- why picture b differs from picture a, or nil
function M.moved(a, b)
  if #a ~= #b then return fmt("the recipe's state held %d values before and %d after", #a, #b) end
  for i = 1, #a do
    local x, y = a[i], b[i]
    if not same(x, y) then
      return fmt("a value of the recipe's state changed (%s -> %s)", type(x) == "string" and "a string" or type(x),
                 type(y) == "string" and "a string" or type(y))
    end
  end
end

-- the digest of the state reachable from roots: {tensors =, sum =, picture =}
function M.digest(roots)
  local pic, ts = M.picture(roots)
  local h = 0
  for i, t in next, ts do h = (h * 31 + checksum(t) + i) & 0x7fffffffffffffff end
  return {tensors = #ts, sum = h, picture = pic}
end

-- why digest b differs from a, or nil
function M.changed(a, b)
  if a.tensors ~= b.tensors then return fmt("the recipe's state held %d tensors before validation and %d after", a.tensors, b.tensors) end
  if a.sum ~= b.sum then return "tensors of the recipe's state changed values" end
  local why = M.moved(a.picture, b.picture)
  if why then return why .. ", or tensors were written in place (and restored)" end
end

-- ---- the library

local sealed   -- {[table] = {name, copy (raw key -> value), metatable}}

local function copy_of(t)
  local c, n = {}, 0
  for k, v in next, t do c[k] = v; n = n + 1 end
  return c, n
end

-- the modules' tables and the tables reachable from their fields and metatables (tensors and other
-- userdata not entered), as they are now; open: tables the library fills for the recipe (the
-- registry of kernel ops, speedrun.kernel.ops), left unsealed: the harness walks them as the
-- recipe's state instead (child.lua's roots)
function M.seal_library(names, open)
  sealed = {}
  local stack = {}
  for name in next, names do
    local m = package.loaded[name]
    if type(m) == "table" then stack[#stack + 1] = {m, name} end
  end
  while #stack > 0 do
    local t, name = stack[#stack][1], stack[#stack][2]
    stack[#stack] = nil
    if not sealed[t] and t ~= _G and not (open and open[t]) then
      local c, n = copy_of(t)
      local mt = getmetatable(t)
      sealed[t] = {name = name, copy = c, n = n, mt = mt}
      for k, v in next, t do
        if type(v) == "table" then stack[#stack + 1] = {v, name .. "." .. tostring(k)} end
      end
      if type(mt) == "table" then stack[#stack + 1] = {mt, "getmetatable(" .. name .. ")"} end
    end
  end
  M.seal_functions()
end

-- the functions of the library now: reachable from its modules' tables through tables (sealed or
-- not: caches the library keeps in upvalues included) and upvalues
function M.seal_functions()
  local fns, seen, stack = {}, {[_G] = true}, {}
  for t in next, sealed do stack[#stack + 1] = t end
  while #stack > 0 do
    local v = stack[#stack]
    stack[#stack] = nil
    local tv = type(v)
    if (tv == "table" or tv == "function") and not seen[v] and not is_tensor(v) then
      seen[v] = true
      if tv == "table" then
        for k, x in next, v do stack[#stack + 1] = x; stack[#stack + 1] = k end
        stack[#stack + 1] = getmetatable(v)
      else
        fns[v] = true
        push_upvalues(v, stack)
      end
    end
  end
  lib_fns = fns
end

-- the first change of a sealed library table, or nil (nil too when nothing was sealed)
function M.library_changed()
  if not sealed then return nil end
  for t, s in next, sealed do
    local n = 0
    for k, v in next, t do
      n = n + 1
      if not rawequal(s.copy[k], v) then return fmt("%s.%s was changed", s.name, tostring(k)) end
    end
    if n ~= s.n then return fmt("a field of %s was removed", s.name) end
    if not rawequal(getmetatable(t), s.mt) then return fmt("the metatable of %s was changed", s.name) end
  end
end

return M
