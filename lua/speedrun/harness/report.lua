-- speedrun.harness.report: how the child reports to the parent. Events go out as JSON lines on
-- the event channel (fd 3, out of the recipe's reach); a run that goes wrong raises a Fail
-- ({kind, message}) or a plain error, which `caught` turns into {kind, message, traceback?}.
-- Failure kinds: lua_error, cuda_fault, oom, timeout, nan, invalid, rejected, crash. Whether a
-- run is valid is decided by the parent (harness/verdict.lua), never here.
local H = require "speedrun.harness_core"
local json = require "speedrun.json"

local emit_raw, encode = H.emit, json.encode
local sfind, slower, smatch = string.find, string.lower, string.match
local error, setmetatable, getmetatable, type, tostring = error, setmetatable, getmetatable, type, tostring
local xpcall, traceback = xpcall, debug.traceback

local M = {}

-- one event to the parent
function M.emit(ev) emit_raw(encode(ev)) end

local Fail = {}
Fail.__index = Fail

-- raises a failure of the given kind
function M.fail(kind, message) error(setmetatable({kind = kind, message = message}, Fail), 0) end

local function has(s, what) return sfind(s, what, 1, true) ~= nil end

-- the kind of a plain error, from its message
local function classify(msg)
  local m = slower(msg)
  if has(m, "out of host memory") or has(m, "not enough memory") or has(m, "out of memory")
     or has(m, "cudaerrormemoryallocation") then
    return "oom"
  end
  if has(m, "cuda error") or has(m, "illegal memory access") or has(m, "misaligned")
     or has(m, "device-side") or has(m, "unspecified launch failure") or has(m, "illegal instruction")
     or has(m, "kernel fault") or has(m, "cuda_fault") then
    return "cuda_fault"
  end
  if has(msg, "rejected: ") then return "rejected" end
  return "lua_error"
end

-- xpcall handler of the run: a Fail as it is, a plain error as {kind, message, traceback}
function M.caught(x)
  if getmetatable(x) == Fail then return x end
  local msg = type(x) == "string" and x or tostring(x)
  -- a traceback is already attached by the inner handlers; keep the first line as the message
  local first = smatch(msg, "^(.-)\nstack traceback:") or msg
  local tb = smatch(msg, "\n(stack traceback:.*)$") or traceback(nil, 2)
  return {kind = classify(first), message = first, traceback = tb}
end

-- calls fn(...) with a traceback on error; re-raises the error with the traceback attached
function M.call(fn, ...)
  local ok, r = xpcall(fn, traceback, ...)
  if not ok then error(r, 0) end
  return r
end

return M
