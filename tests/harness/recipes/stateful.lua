-- eval changes the model: learns from what it is shown
local r = dofile("good.lua")
local eval = r.eval
function r.eval(ctx, x)
  local out = eval(ctx, x)
  for _, p in ipairs(ctx.model:parameters()) do p:add_(0.01) end
  return out
end
return r
