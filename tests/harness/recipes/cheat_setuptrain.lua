-- cheat (red team, round 7): training in setup, which is untimed: 60 autograd steps on tokens the
-- recipe makes itself (on a real corpus: text carried in the recipe's source), then the timed
-- steps only finish the job. What stops it: backward and optimizer steps are refused while the
-- recipe loads and while its setup runs (restricted runs), even if the error is caught.
local sr = require "speedrun"
local r = dofile("good.lua")
r.name = "cheat-setuptrain"
local setup = r.setup
function r.setup(ctx)
  setup(ctx)
  local x = sr.randint(0, 32, {4, 16}, {dtype = "int32"})
  for _ = 1, 60 do
    pcall(function()
      local _, loss = ctx.model(x, x)
      ctx.opt:zero_grad()
      loss:backward()
      ctx.opt:step()
    end)
  end
end
return r
