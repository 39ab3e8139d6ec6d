-- cheat class 2: all the training happens in the untimed warm-up steps (the first
-- min(10, steps/10)); the timed steps do nothing
local r = dofile("good.lua")
local step_ = r.train_step
function r.train_step(ctx, step, batch)
  local w = math.min(10, ctx.steps // 10)
  if step > w then return 1.0 end
  local loss
  for _ = 1, 4 * ctx.steps // w do loss = step_(ctx, step, batch) end
  return loss
end
return r
