-- The command line: --help, --version, `run` with arguments, and Lua errors that print a
-- message with a traceback and exit non-zero.
local T = require "speedrun.testing"

local exe = arg[-1]
local tmp = os.getenv("SPEEDRUN_TEST_TMP") or "/tmp"
os.execute("mkdir -p '" .. tmp .. "'")

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return out, rc
end

local function write(name, text)
  local path = tmp .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

T.case("--help and --version", function()
  local out, rc = sh(("'%s' --help"):format(exe))
  T.eq(rc, 0); T.ok(out:find("speedrun run FILE.lua", 1, true), out)
  out, rc = sh(("'%s' --version"):format(exe))
  T.eq(rc, 0); T.ok(out:match("^speedrun %d+%.%d+%.%d+"), out)
  out, rc = sh(("'%s' frobnicate"):format(exe))
  T.eq(rc, 2); T.ok(out:find("unknown command 'frobnicate'", 1, true), out)
end)

T.case("run passes arguments as lua does", function()
  local path = write("args.lua", "print(arg[0], arg[1], arg[2], select('#', ...), speedrun ~= nil)")
  local out, rc = sh(("'%s' run '%s' a b"):format(exe, path))
  T.eq(rc, 0)
  T.ok(out:find(path .. "\ta\tb\t2\ttrue", 1, true), out)
end)

T.case("a Lua error prints the message and a traceback, exit non-zero", function()
  local path = write("boom.lua", "local function f() error('boom here') end\nf()\n")
  local out, rc = sh(("'%s' run '%s'"):format(exe, path))
  T.ok(rc ~= 0)
  T.ok(out:find("boom here", 1, true), out)
  T.ok(out:find("stack traceback", 1, true), out)
  local bad = write("syntax.lua", "local x = = 1\n")
  out, rc = sh(("'%s' run '%s'"):format(exe, bad))
  T.ok(rc ~= 0); T.ok(out:find("syntax.lua:1:", 1, true), out)
  out, rc = sh(("'%s' run '%s/missing.lua'"):format(exe, tmp))
  T.ok(rc ~= 0); T.ok(out:find("cannot open", 1, true), out)
end)

T.case("an op error inside a script names the op", function()
  local path = write("op.lua", "local F = speedrun.F\nF.matmul(speedrun.zeros(2, 3), speedrun.zeros(2, 3))\n")
  local out, rc = sh(("'%s' run '%s'"):format(exe, path))
  T.ok(rc ~= 0); T.ok(out:find("matmul: bad argument #2", 1, true), out)
end)

T.done()
