local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  -- the agent's own modules (its LLM client and key): host-only, caught, still a violation
  pcall(require, "speedrun.agent.llm")
  setup(ctx)
end
return r
