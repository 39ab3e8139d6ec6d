-- tests/agent/fakes.lua: scripted stand-ins for speedrun.agent.llm and speedrun.agent.coder, so the
-- loop runs without a model. script[node id] names what the "model" writes for that node:
--   rec2  record 2's recipe (tasks/record_02/recipe.lua) over recipe.lua
--   crash record 1 with an error at load (lua_error)      loop  an endless loop (timeout)
--   exec  record 1 calling os.execute (rejected)          none  a reply with no edit
--   stepsN record 1 training N steps at micro scale (its config says 20): train time ~ N steps
-- The fake chat answers "node N" with a canned reply: a hypothesis line and whole-file blocks
-- (FILE path / ```lua ... ```); the fake coder applies them. Replies depend on the node only, so
-- a resumed run gets the same replies as an uninterrupted one.
local F = {}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function recipe(kind, root)
  local rec1 = read(root .. "/tasks/record_01/recipe.lua")
  if kind == "rec2" then return read(root .. "/tasks/record_02/recipe.lua") end
  if kind == "crash" then return "error('deliberate crash in the recipe')\n" .. rec1 end
  if kind == "loop" then return "while true do end\n" .. rec1 end
  if kind == "exec" then return "os.execute('true')\n" .. rec1 end
  local n = tostring(kind):match("^steps(%d+)$")
  if n then
    assert(rec1:find("steps = 20,", 1, true), "record 1's micro steps")
    return (rec1:gsub("steps = 20,", "steps = " .. n .. ",", 1))
  end
end

-- chat: a function(messages) -> reply; calls[i] = the node asked for
function F.chat(script, root, usage)
  local calls = {}
  local function chat(messages)
    local text = messages[#messages].content
    calls[#calls + 1] = text
    local id = tonumber(text:match("^node (%d+)"))
    local kind = id and script[id] or "none"
    local body = recipe(kind, root)
    local content = ("Hypothesis: make node %s a %s version.\n"):format(tostring(id), kind)
    if body then content = content .. "FILE recipe.lua\n```lua\n" .. body .. "```\n" end
    local u = usage or 100
    return {content = content, usage = {prompt_tokens = u, completion_tokens = u // 2, total_tokens = u + u // 2},
            latency_s = 0, model = "fake"}
  end
  return chat, calls
end

-- coder: run{chat, dir, ...} -> {ok, edits, rounds, replies}; whole-file replacements only
F.coder = {}
function F.coder.run(a)
  local id = a.dir:match("v_(%d+)/workspace$")
  local reply, err = a.chat({{role = "user", content = "node " .. id .. "\n" .. a.instruction}})
  if not reply then return {ok = false, edits = {}, rounds = 1, error = err, replies = {}} end
  local edits = {}
  for path, body in reply.content:gmatch("FILE (%S+)\n```lua\n(.-)```\n") do
    local f = assert(io.open(a.dir .. "/" .. path, "wb"))
    f:write(body)
    f:close()
    edits[#edits + 1] = {path = path, search = "", replace = body}
  end
  return {ok = true, edits = edits, rounds = 1, replies = {reply.content}}
end

return F
