-- tests/agent/test_oracle_server.lua: bench/oracle_server.py (the oracle model of the GPU session,
-- where no hosted API is reachable) through the agent's own chat client: the reply is
-- bench/oracle_reply.lua's blocks, which the coder applies to record 1's recipe to give record 2's
-- byte for byte; usage is counted; a non-JSON body and a wrong path are HTTP errors the client
-- reports. Skips (exit 77) without python3.
local S = dofile("agent/server.lua")
S.isolate()
local T = require "speedrun.testing"
local process = require "speedrun.process"
local llm = require "speedrun.agent.llm"
local coder = require "speedrun.agent.coder"
local http = require "speedrun.http"

local py = io.popen("command -v python3 2>/dev/null"):read("l")
if not py or py == "" then T.skip("python3 is not installed") end
local W = T.workspace("oracle-server", {})
local reply_file = W.tmp .. "/reply.txt"
local rc = os.execute(T.shell_quote(arg[-1]) .. " run ../bench/oracle_reply.lua 1 > " .. T.shell_quote(reply_file))
T.ok(rc, "oracle_reply.lua 1 ran")
T.eq(select(3, os.execute(T.shell_quote(arg[-1]) .. " run ../bench/oracle_reply.lua 0 2>/dev/null")), 2, "task 0 is a usage error")

local p = process.spawn {argv = {py, "../bench/oracle_server.py", reply_file}}
local out = ""
for _ = 1, 200 do
  for _, ev in ipairs(p:read(0.05)) do if ev[1] == "stdout" then out = out .. ev[2] end end
  if out:match("^%d+\n") then break end
end
local port = tonumber(out:match("^(%d+)\n"))
if not port then p:close() error("oracle_server.py did not start: " .. out) end
local base = "http://127.0.0.1:" .. port .. "/v1"

T.case("oracle server: the chat client gets the blocks that turn record 1 into record 2", function()
  local client = llm.new {base_url = base, model = "oracle", retries = 0}
  local r, err = client:chat({{role = "user", content = string.rep("x", 400)}})
  T.ok(r, err)
  T.eq(r.content, T.read(reply_file))
  T.eq(r.usage.prompt_tokens, 100)
  T.eq(r.usage.completion_tokens, #r.content // 4)
  local dir = W.tmp .. "/ws"
  os.execute("rm -rf " .. T.shell_quote(dir) .. " && mkdir -p " .. T.shell_quote(dir))
  T.write(dir .. "/recipe.lua", T.read("../tasks/record_01/recipe.lua"))
  local edits, problems = coder.parse(r.content)
  T.ok(edits and #edits > 0, "blocks parsed: " .. tostring(problems))
  T.ok(coder.apply(dir, edits))
  T.ok(T.read(dir .. "/recipe.lua") == T.read("../tasks/record_02/recipe.lua"), "applied, the blocks give record 2's recipe")
end)

T.case("oracle server: a body that is not JSON and another endpoint are HTTP errors", function()
  local r1, e1 = http.request {url = base .. "/chat/completions", body = "not json"}
  T.ok(not r1 and e1:find("HTTP 400", 1, true) and e1:find("not JSON", 1, true), tostring(e1))
  local r2, e2 = http.request {url = base .. "/embeddings", body = "{}"}
  T.ok(not r2 and e2:find("HTTP 404", 1, true) and e2:find("no such endpoint", 1, true), tostring(e2))
end)

p:close()
T.done()
