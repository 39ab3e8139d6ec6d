-- speedrun.profile: where a piece of work spends its kernel time (docs/harness.md, "Profiling a recipe").
--   local profile = require "speedrun.profile"      -- also speedrun.profile
--   profile.start(); ...; local rows = profile.stop()   -- the C core: host/lua/lprofile.c
--   profile.active()                                  -- true while a profile runs
--   local rows, ... = profile.run(fn, ...)            -- start, fn(...), stop (also when fn raises)
--   local ms, rows = profile.time(fn, iters, sync)    -- wall-clock ms a call, then a profile of iters calls
--   profile.op_name(row)                              -- "binary.add", "gemm"
--   print(profile.report(rows, {top = 40, by = "phase"}))
-- A row is {name=, sub=, dtype=, phase=, calls=, ms=, numel=} per kernel, sub-function (unary,
-- binary and reduce kernels), dtype of the first tensor and phase ("fwd", "bwd:<autograd node>",
-- "bwd:accumulate"); ms is the total time of its calls: wall clock on the CPU, CUDA events on the
-- GPU (kernel time on the stream). Optimizer steps and anything outside backward count as "fwd".
local core = require "speedrun.profile_core"

local P = {start = core.start, stop = core.stop, active = core.active}

-- run(fn, ...) -> rows, fn's results. The profile stops even when fn raises; the error is raised
-- again afterwards.
function P.run(fn, ...)
  core.start()
  local res = table.pack(pcall(fn, ...))
  if not res[1] then
    pcall(core.stop)
    error(res[2], 0)
  end
  return core.stop(), table.unpack(res, 2, res.n)
end

-- time(fn, iters, sync) -> ms, rows: fn run twice to warm up, then iters times on the wall clock
-- (sync(), when given, before and after: the device's queue drained), ms per call; then iters more
-- under the profiler, their rows (the benches' timing: bench/xent.lua, bench/loss_head.lua)
function P.time(fn, iters, sync)
  local clock = require("speedrun").clock
  sync = sync or function() end
  for _ = 1, 2 do fn() end
  sync()
  collectgarbage()
  local t0 = clock()
  for _ = 1, iters do fn() end
  sync()
  local ms = (clock() - t0) / iters * 1e3
  return ms, P.run(function() for _ = 1, iters do fn() end end)
end

-- "binary.add", "gemm": the kernel and its sub-function
local function op_name(r) return r.sub and (r.name .. "." .. r.sub) or r.name end
P.op_name = op_name

-- rows merged by key(row): {op=, phase=, dtype=, calls=, ms=}, largest ms first
local function merge(rows, by_op)
  local groups, order = {}, {}
  for _, r in ipairs(rows) do
    local op = op_name(r)
    local phase = by_op and "all" or r.phase
    local key = op .. "\0" .. phase .. "\0" .. r.dtype
    local g = groups[key]
    if not g then
      g = {op = op, phase = phase, dtype = r.dtype, calls = 0, ms = 0}
      groups[key] = g
      order[#order + 1] = g
    end
    g.calls = g.calls + r.calls
    g.ms = g.ms + r.ms
  end
  table.sort(order, function(a, b)
    if a.ms ~= b.ms then return a.ms > b.ms end
    if a.op ~= b.op then return a.op < b.op end
    if a.phase ~= b.phase then return a.phase < b.phase end
    return a.dtype < b.dtype
  end)
  return order
end

-- report(rows [, {top = 40, by = "phase" | "op"}]) -> a text table: op, phase, dtype, calls,
-- total ms, % of total, mean µs per call; by = "op" merges the phases of each op and dtype. The
-- top N lines, a line for the rest when there is more, and the total of every row.
function P.report(rows, opts)
  opts = opts or {}
  local by = opts.by or "phase"
  if by ~= "phase" and by ~= "op" then error("profile.report: by must be \"phase\" or \"op\", got " .. tostring(by), 2) end
  local top = opts.top or 40
  local groups = merge(rows, by == "op")
  local total_ms, total_calls = 0, 0
  for _, g in ipairs(groups) do
    total_ms = total_ms + g.ms
    total_calls = total_calls + g.calls
  end
  local function pct(ms) return total_ms > 0 and ("%.1f"):format(100 * ms / total_ms) or "-" end
  local function mean_us(ms, calls) return calls > 0 and ("%.1f"):format(1e3 * ms / calls) or "-" end
  local lines = {{"op", "phase", "dtype", "calls", "total ms", "%", "mean µs"}}
  for i = 1, math.min(top, #groups) do
    local g = groups[i]
    lines[#lines + 1] = {g.op, g.phase, g.dtype, tostring(g.calls), ("%.3f"):format(g.ms), pct(g.ms), mean_us(g.ms, g.calls)}
  end
  if #groups > top then
    local ms, calls = 0, 0
    for i = top + 1, #groups do
      ms, calls = ms + groups[i].ms, calls + groups[i].calls
    end
    lines[#lines + 1] = {("(%d more)"):format(#groups - top), "", "", tostring(calls), ("%.3f"):format(ms), pct(ms), mean_us(ms, calls)}
  end
  lines[#lines + 1] = {"total", "", "", tostring(total_calls), ("%.3f"):format(total_ms), total_ms > 0 and "100.0" or "-",
                       mean_us(total_ms, total_calls)}
  local width = {}
  for _, l in ipairs(lines) do
    for c, cell in ipairs(l) do width[c] = math.max(width[c] or 0, utf8.len(cell)) end
  end
  local out = {}
  for _, l in ipairs(lines) do
    local cells = {}
    for c, cell in ipairs(l) do
      -- text columns left-aligned, numbers right-aligned
      local pad = (" "):rep(width[c] - utf8.len(cell))
      cells[c] = c <= 3 and cell .. pad or pad .. cell
    end
    out[#out + 1] = table.concat(cells, "  "):gsub("%s+$", "")
  end
  return table.concat(out, "\n")
end

return P
