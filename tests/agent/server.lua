-- tests/agent/server.lua: starts tests/agent/llm_server.js (the scripted OpenAI-compatible server) for
-- a test; skips the test (exit 77) where node is missing. Used from tests/ (CTest's working folder):
--   local S = dofile("agent/server.lua").start()
--   S:script("case1", {{status = 500}, {reply = "hi"}})   -- steps; then = {reply = "ok"} unless given
--   S:url("case1", "/v1")  -> "http://127.0.0.1:PORT/case1/v1"
--   S:requests("case1")    -> {{method, path, headers, body}, ...}
--   S:stop()
-- M.isolate(env) first runs the test file again (once) with no proxy variables, no_proxy covering
-- 127.0.0.1, and the given extra variables, so a CI proxy never sees the local server; it exits with
-- the child's status.
local T = require "speedrun.testing"
local process = require "speedrun.process"
local http = require "speedrun.http"
local json = require "speedrun.json"

local M = {}

local function find_node()
  local p = io.popen("command -v node 2>/dev/null")
  local path = p:read("l")
  p:close()
  return path ~= nil and path ~= "" and path or nil
end

local PROXY_VARS = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "NO_PROXY"}

function M.isolate(env)
  if os.getenv("SPEEDRUN_AGENT_TEST_ISOLATED") == "1" then return end
  local f = io.open("/usr/bin/env")
  if f then f:close() end
  local cmd = {f and "/usr/bin/env" or "env"}
  for _, v in ipairs(PROXY_VARS) do cmd[#cmd + 1] = "-u " .. v end
  cmd[#cmd + 1] = "no_proxy=127.0.0.1,localhost SPEEDRUN_AGENT_TEST_ISOLATED=1"
  for k, v in pairs(env or {}) do cmd[#cmd + 1] = T.shell_quote(k .. "=" .. v) end
  cmd[#cmd + 1] = T.shell_quote(arg[-1]) .. " run " .. T.shell_quote(arg[0])
  local _, how, code = os.execute(table.concat(cmd, " "))
  os.exit(how == "exit" and code or 1)
end

local Server = {}
Server.__index = Server

function Server:url(id, path) return ("http://127.0.0.1:%d/%s%s"):format(self.port, id, path or "") end

function Server:script(id, steps, after)
  local body = json.encode {steps = #steps > 0 and steps or json.array({}), ["then"] = after}
  local r, err = http.request {method = "POST", url = ("http://127.0.0.1:%d/__script/%s"):format(self.port, id),
                               body = body, headers = {["Content-Type"] = "application/json"}, retries = 0}
  assert(r, err)
end

function Server:requests(id)
  local r, err = http.request {url = ("http://127.0.0.1:%d/__requests/%s"):format(self.port, id), retries = 0}
  assert(r, err)
  return assert(json.decode(r.body))
end

function Server:stop()
  if self.proc then
    self.proc:close()
    self.proc = nil
  end
end

function M.start()
  local node = find_node()
  if not node then T.skip("node is not installed") end
  local p = process.spawn {argv = {node, "agent/llm_server.js", tostring(process.getpid())}}
  local out = ""
  for _ = 1, 200 do
    for _, ev in ipairs(p:read(0.05)) do
      if ev[1] == "stdout" then out = out .. ev[2] end
      if ev[1] == "stderr" then io.stderr:write(ev[2]) end
    end
    local port = out:match("^(%d+)\n")
    if port then return setmetatable({proc = p, port = tonumber(port)}, Server) end
  end
  p:close()
  error("llm_server.js did not start within 10 s")
end

return M
