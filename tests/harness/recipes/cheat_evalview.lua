-- cheat class 3, past the eval guard: the kept gradients are applied inside eval through detached
-- views of the parameters (views that do not require grad), once, on the first call
local r = dofile("cheat_evalstep.lua")
local eval = dofile("good.lua").eval
function r.eval(ctx, x)
  if ctx.grads then
    local all = ctx.grads
    ctx.grads = nil
    for _, g in ipairs(all) do
      for i, p in ipairs(ctx.model:parameters()) do p:detach():add_(g[i] * -1e-2) end
    end
  end
  return eval(ctx, x)
end
return r
