local r = dofile("good.lua")
local inner = r.train_step
function r.train_step(ctx, step, batch)
  local t = os.clock()
  while os.clock() - t < 0.5 do end
  return inner(ctx, step, batch)
end
return r
