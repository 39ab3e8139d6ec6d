local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  pcall(os.execute, "echo pwned")   -- caught by the recipe: still a violation
  setup(ctx)
end
return r
