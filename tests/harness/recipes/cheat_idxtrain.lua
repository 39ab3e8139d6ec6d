-- cheat (red team, round 8): training in an __index of the recipe table, which the harness reads off
-- the clock (recipe.schedule, after setup and outside its guard): 50 autograd steps there, the
-- timed steps only finishing (FSR 1.68 against an honest 0.10). What stops it: the recipe table and
-- its config must be plain tables (no metatable), and the no-training guard is on for the child's
-- whole life but the timed steps.
local sr = require "speedrun"
local r = dofile("good.lua")
r.name = "cheat-idxtrain"
local CTX
local setup = r.setup
function r.setup(ctx) setup(ctx); CTX = ctx end
return setmetatable(r, {__index = function(_, k)
  if k == "schedule" and CTX and not CTX.done then
    CTX.done = true
    local x = sr.randint(0, 32, {4, 16}, {dtype = "int32"})
    for _ = 1, 50 do
      local _, loss = CTX.model(x, x)
      CTX.opt:zero_grad()
      loss:backward()
      CTX.opt:step()
    end
  end
end})
