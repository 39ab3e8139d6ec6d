-- cheat: training inside eval with no hidden state at all. train_step only keeps a clone of its
-- batch in ctx (never changed afterwards); every eval call trains a fresh bigram table W from zero
-- on all kept batches with hand-written gradient steps (softmax - onehot; W does not require grad,
-- so no autograd, backward, optimizer or in-place write to a grad tensor: the eval guard is silent)
-- and answers with it. The training is deterministic, so each call gives the same logits
-- (stateless), the model is causal, and the state digest sees ctx unchanged: eval is untimed, so
-- the whole training is off the clock, redone on every call.
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-evalrecompute"
local V = 32
function r.setup(ctx)
  ctx.kept, ctx.lr = {}, 1.0 + 0.01 * ctx.seed
  local eye = {}
  for i = 1, V do eye[i] = {} for j = 1, V do eye[i][j] = i == j and 1 or 0 end end
  ctx.I = sr.tensor(eye)
end
function r.train_step(ctx, step, batch)
  ctx.kept[#ctx.kept + 1] = {batch.x:clone(), batch.y:clone()}
end
function r.eval(ctx, x)
  local W, I = sr.zeros({V, V}), ctx.I
  for _ = 1, 2 do
    for _, b in ipairs(ctx.kept) do
      local bx, by = b[1]:reshape(-1), b[2]:reshape(-1)
      local g = F.sub(F.softmax(F.embedding(bx, W), -1), F.embedding(by, I))
      W = F.sub(W, F.mul(F.matmul(F.embedding(bx, I):transpose(), g), ctx.lr / bx:size(1)))
    end
  end
  return F.embedding(x, W)
end
return r
