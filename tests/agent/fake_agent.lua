-- tests/agent/fake_agent.lua: `speedrun run agent/fake_agent.lua SPEC.json` runs (or resumes) an
-- agent run with the scripted chat and coder of fakes.lua, so tests can SIGKILL it mid-run.
-- SPEC: {mode = "start"|"resume", dir, config, script = {[id] = kind, ...}}
local json = require "speedrun.json"
local loop = require "speedrun.agent.loop"
local F = dofile("agent/fakes.lua")

local f = assert(io.open(arg[1], "rb"))
local spec = assert(json.decode(f:read("a")))
f:close()
local script = {}
for k, v in pairs(spec.script) do script[tonumber(k)] = v end
local chat = F.chat(script, "..")
local deps = {chat = chat, coder = F.coder, quiet = false}
if spec.mode == "start" then loop.start(spec.dir, spec.config, deps) else loop.resume(spec.dir, deps) end
