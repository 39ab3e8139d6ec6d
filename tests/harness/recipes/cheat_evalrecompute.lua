-- cheat: training inside eval with no hidden state at all. train_step only keeps a clone of its
-- batch in ctx (never changed afterwards); every eval call trains a fresh bigram table W from zero
-- on all kept batches with hand-written gradient steps (cheat_evalhidden.lua's; W does not require
-- grad, so no autograd, backward, optimizer or in-place write to a grad tensor: the eval guard is
-- silent) and answers with it. The training is deterministic, so each call gives the same logits
-- (stateless), the model is causal, and the state digest sees ctx unchanged: eval is untimed, so
-- the whole training is off the clock, redone on every call.
local sr = require "speedrun"
local r = dofile("good.lua")
local bigram = dofile("cheat_evalhidden.lua").bigram
r.name = "cheat-evalrecompute"
local V = 32
function r.setup(ctx)
  ctx.kept, ctx.lr = {}, 1.0 + 0.01 * ctx.seed
  ctx.I = sr.F.cast(sr.F.eq(sr.arange(V):view(V, 1), sr.arange(V):view(1, V)), "float32")   -- the identity
end
function r.train_step(ctx, step, batch)
  ctx.kept[#ctx.kept + 1] = {batch.x:clone(), batch.y:clone()}
end
function r.eval(ctx, x)
  return sr.F.embedding(x, bigram(ctx.kept, sr.zeros({V, V}), ctx.I, ctx.lr))
end
return r
