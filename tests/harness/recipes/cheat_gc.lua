-- cheat class 3, through finalizers: train_step keeps each batch in an object whose __gc trains on
-- it, and the first eval (untimed) runs a collection, so the training happens in the finalizers,
-- off the clock (stopping the collector until then, as this cheat first did, is refused on its own:
-- test_cheats_sandbox.lua)
local sr = require "speedrun"
local r = dofile("good.lua")
local step_, eval = r.train_step, r.eval
function r.train_step(ctx, step, batch)
  local b = {x = batch.x:clone(), y = batch.y:clone()}
  pcall(setmetatable, {}, {__gc = function()
    local was = sr.is_grad_enabled()
    pcall(function() sr.set_grad_enabled(true); step_(ctx, step, b); step_(ctx, step, b) end)
    sr.set_grad_enabled(was)
  end})
  return 1.0
end
function r.eval(ctx, x)
  if not ctx.collected then
    ctx.collected = true
    collectgarbage()
  end
  return eval(ctx, x)
end
return r
