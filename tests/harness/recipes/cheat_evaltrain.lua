-- cheat class 3: train_step only keeps the batches; the first eval (untimed) switches grad mode
-- back on and trains on them
local sr = require "speedrun"
local r = dofile("good.lua")
local step_, eval = r.train_step, r.eval
function r.train_step(ctx, step, batch)
  ctx.kept = ctx.kept or {}
  ctx.kept[#ctx.kept + 1] = {x = batch.x:clone(), y = batch.y:clone()}
  return 1.0
end
function r.eval(ctx, x)
  if ctx.kept then
    local kept = ctx.kept
    ctx.kept = nil
    pcall(function()
      sr.set_grad_enabled(true)
      for _ = 1, 2 do for i, b in ipairs(kept) do step_(ctx, i, b) end end
    end)
    sr.set_grad_enabled(false)
  end
  return eval(ctx, x)
end
return r
