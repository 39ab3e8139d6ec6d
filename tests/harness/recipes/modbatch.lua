local r = dofile("good.lua")
local inner = r.train_step
function r.train_step(ctx, step, batch)
  local loss = inner(ctx, step, batch)
  batch.y:fill_(0)
  return loss
end
return r
