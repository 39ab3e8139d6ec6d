-- cheat class 3, without grad mode: on even steps train_step only computes the gradients (kept);
-- eval applies those optimizer steps, untimed (an optimizer step needs no autograd)
local r = dofile("good.lua")
local eval = r.eval
function r.train_step(ctx, step, batch)
  local _, loss = ctx.model(batch.x, batch.y)
  ctx.opt:zero_grad()
  loss:backward()
  if step % 2 == 1 then ctx.opt:step(); return loss end
  ctx.grads = ctx.grads or {}
  local g = {}
  for i, p in ipairs(ctx.model:parameters()) do g[i] = p.grad:clone() end
  ctx.grads[#ctx.grads + 1] = g
  return loss
end
function r.eval(ctx, x)
  if ctx.grads then
    local all = ctx.grads
    ctx.grads = nil
    pcall(function()
      for _, g in ipairs(all) do
        for i, p in ipairs(ctx.model:parameters()) do p.grad = g[i] end
        ctx.opt:step()
      end
    end)
  end
  return eval(ctx, x)
end
return r
