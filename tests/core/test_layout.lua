-- The house rules of the source tree, checked on the checkout itself (run from tests/):
-- host/ holds subsystem folders only; the include graph between host modules (a module is a .c
-- and its .h) has no loop; no source file over 900 lines (kernel tests excepted) and no function
-- over 150 lines in host/, kernels/ and lua/speedrun/harness/. A test, not a linter: each rule
-- names what breaks it.
local T = require "speedrun.testing"

local ROOT = ".."
local MAX_FILE, MAX_FN = 900, 150

local function lines_of(path)
  local f = assert(io.open(path))
  local t = {}
  for l in f:lines() do t[#t + 1] = l end
  f:close()
  return t
end

-- every path under dir (relative to ROOT) whose name matches one of the Lua patterns
local function files(dir, patterns)
  local p = assert(io.popen(("find %s/%s -type f | sort"):format(ROOT, dir)))
  local out = {}
  for path in p:lines() do
    for _, pat in ipairs(patterns) do
      if path:match(pat) then out[#out + 1] = path:sub(#ROOT + 2); break end
    end
  end
  p:close()
  return out
end

local host = files("host", {"%.c$", "%.h$"})

T.case("host/ holds subsystem folders only", function()
  T.ok(#host > 40, "host/ sources found: " .. #host)
  for _, f in ipairs(host) do
    T.ok(f:match("^host/[%w_]+/[%w_]+%.[ch]$"), f .. ": not in a host/<subsystem>/ folder")
  end
end)

-- module graph: "core/tensor" -> {"core/registry" = true, ...} from #include "x/y.h" lines
local function include_graph()
  local g, exists = {}, {}
  for _, f in ipairs(host) do exists[f:sub(6)] = true end
  for _, f in ipairs(host) do
    local m = f:sub(6):gsub("%.[ch]$", "")
    g[m] = g[m] or {}
    for _, l in ipairs(lines_of(ROOT .. "/" .. f)) do
      local inc = l:match('^%s*#%s*include%s+"([%w_/]+)%.h"')
      if inc and inc ~= m and exists[inc .. ".h"] then g[m][inc] = true end
    end
  end
  return g
end

-- the first cycle found, as "a -> b -> a", or nil
local function find_cycle(g)
  local state, stack = {}, {}
  local function visit(m)
    state[m] = "open"
    stack[#stack + 1] = m
    local deps = {}
    for d in pairs(g[m] or {}) do deps[#deps + 1] = d end
    table.sort(deps)
    for _, d in ipairs(deps) do
      if state[d] == "open" then
        local i = #stack
        while stack[i] ~= d do i = i - 1 end
        local c = {table.unpack(stack, i)}
        c[#c + 1] = d
        return table.concat(c, " -> ")
      elseif not state[d] then
        local c = visit(d)
        if c then return c end
      end
    end
    stack[#stack] = nil
    state[m] = "done"
  end
  local mods = {}
  for m in pairs(g) do mods[#mods + 1] = m end
  table.sort(mods)
  for _, m in ipairs(mods) do
    if not state[m] then
      local c = visit(m)
      if c then return c end
    end
  end
end

T.case("no include loop between host modules", function()
  local g = include_graph()
  T.ok(next(g["core/ops"]), "the graph has edges (core/ops includes core headers)")
  T.eq(find_cycle(g), nil, "include cycle")
  -- the cycle finder itself finds a planted loop
  T.eq(find_cycle({a = {b = true}, b = {c = true}, c = {a = true}}), "a -> b -> c -> a")
end)

local sources = {}
for _, f in ipairs(host) do sources[#sources + 1] = f end
for _, f in ipairs(files("kernels", {"%.cu$", "%.cuh$"})) do sources[#sources + 1] = f end
local harness = files("lua/speedrun/harness", {"%.lua$"})

T.case("no file over " .. MAX_FILE .. " lines", function()
  local all = {table.unpack(sources)}
  for _, f in ipairs(files("lua", {"%.lua$"})) do all[#all + 1] = f end
  local bad = {}
  for _, f in ipairs(all) do
    local n = #lines_of(ROOT .. "/" .. f)
    if n > MAX_FILE then bad[#bad + 1] = ("%s: %d lines"):format(f, n) end
  end
  T.ok(#bad == 0, table.concat(bad, "; "))
end)

-- C: a definition starts at column 0 with a line ending in ") {" and ends at the next "}" in column 0
local function c_functions(lines)
  local fns, start, name = {}, nil, nil
  for i, l in ipairs(lines) do
    if not start and l:match("^[%a_].*%)%s*{%s*$") and not l:match("^typedef") and not l:match("=") then
      start, name = i, l:match("([%w_]+)%s*%(") or l
    elseif start and l:match("^}") then
      fns[#fns + 1] = {name = name, n = i - start + 1}
      start = nil
    end
  end
  return fns
end

-- Lua: "function" or "local function" at indentation s, ended by the first line that is s.."end"
local function lua_functions(lines)
  local fns = {}
  for i, l in ipairs(lines) do
    local ind, name = l:match("^(%s*)local function ([%w_.:]+)")
    if not ind then ind, name = l:match("^(%s*)function ([%w_.:]+)") end
    if ind and not l:match("end%s*$") then
      for j = i + 1, #lines do
        if lines[j]:match("^" .. ind .. "end") and not lines[j]:match("^" .. ind .. "%s") then
          fns[#fns + 1] = {name = name, n = j - i + 1}
          break
        end
      end
    end
  end
  return fns
end

T.case("no function over " .. MAX_FN .. " lines", function()
  local checked, bad = 0, {}
  local function measure(f, fns)
    for _, fn in ipairs(fns) do
      checked = checked + 1
      if fn.n > MAX_FN then bad[#bad + 1] = ("%s: %s is %d lines"):format(f, fn.name, fn.n) end
    end
  end
  for _, f in ipairs(sources) do measure(f, c_functions(lines_of(ROOT .. "/" .. f))) end
  for _, f in ipairs(harness) do measure(f, lua_functions(lines_of(ROOT .. "/" .. f))) end
  T.ok(checked > 500, "functions measured: " .. checked)
  T.ok(#bad == 0, table.concat(bad, "; "))
  -- the measures find a long function
  local long = {"int f(void) {"}
  for k = 1, 200 do long[#long + 1] = "  x();" end
  long[#long + 1] = "}"
  T.eq(c_functions(long)[1].n, 202)
  T.eq(lua_functions({"local function g()", "  if x then", "  end", "end"})[1].n, 4)
end)

T.done()
