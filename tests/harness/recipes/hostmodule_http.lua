local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  -- the agent's HTTP client: host-only, caught by the recipe, still a violation
  pcall(require, "speedrun.http")
  setup(ctx)
end
return r
