-- bench/oracle_reply.lua N: prints the oracle model's reply for task N, the SEARCH/REPLACE blocks
-- (speedrun.agent.coder.blocks_from_diff) that turn tasks/record_N's recipe into record N+1's,
-- after a one-line hypothesis, as the scripted model of tests/agent/test_agent_e2e.lua writes it.
--   speedrun run bench/oracle_reply.lua 1 > reply.txt
local coder = require "speedrun.agent.coder"
local n = tonumber(arg[1] or "")
if not n or n < 1 or n ~= math.floor(n) then
  io.stderr:write("usage: speedrun run bench/oracle_reply.lua N (the task: record N to record N+1)\n")
  os.exit(2)
end
local function read(path)
  local f, err = io.open(path, "rb")
  if not f then io.stderr:write("oracle_reply.lua: ", err, "\n") os.exit(1) end
  local s = f:read("a")
  f:close()
  return s
end
local root = (arg[0] or ""):match("^(.*)/bench/[^/]+$") or "."   -- the checkout holding this script
local old = read(string.format("%s/tasks/record_%02d/recipe.lua", root, n))
local new = read(string.format("%s/tasks/record_%02d/recipe.lua", root, n + 1))
io.write(string.format("Hypothesis: apply record %d's changes to record %d.\n\n", n + 1, n),
  coder.blocks_from_diff(old, new, "recipe.lua"))
