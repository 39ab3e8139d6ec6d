local r = dofile("good.lua")
local inner = r.train_step
function r.train_step(ctx, step, batch)
  if step == 2 then while true do end end
  return inner(ctx, step, batch)
end
return r
