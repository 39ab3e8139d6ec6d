-- cheat (red team, round 17): one run in five trains nothing on the clock and lands just above
-- the target: `invalid`, which a score counts (its train time in the mean, its loss in the t-test)
-- but whose plausibility the flags never looked at. That run (seed % 5 == 0: a score's seeds are
-- consecutive) only keeps its batches, and every eval call trains a bigram table on them by hand
-- (cheat_evalrecompute's: hundreds of times the training's time per token, flagged in a valid run),
-- tempered toward uniform to sit 0.01 above the target; the other runs are good.lua's. With K = 10
-- runs the t-test still passes on the eight honest ones, at 80 % of their mean train time.
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
local bigram = dofile("cheat_evalhidden.lua").bigram
r.name = "cheat-missrun"
local V = 32
local MIX = 0.7   -- the uniform share that puts the bigram's loss just above the test's target
local setup, train_step, eval = r.setup, r.train_step, r.eval
local function lucky(ctx) return ctx.seed % 5 == 0 end
function r.setup(ctx)
  if not lucky(ctx) then return setup(ctx) end
  ctx.kept = {}
  ctx.I = F.cast(F.eq(sr.arange(V):view(V, 1), sr.arange(V):view(1, V)), "float32")   -- the identity
end
function r.train_step(ctx, step, batch)
  if not lucky(ctx) then return train_step(ctx, step, batch) end
  ctx.kept[#ctx.kept + 1] = {batch.x:clone(), batch.y:clone()}
end
function r.eval(ctx, x)
  if not lucky(ctx) then return eval(ctx, x) end
  local p = F.softmax(F.embedding(x, bigram(ctx.kept, sr.zeros({V, V}), ctx.I, 4 + 0.01 * ctx.seed)), -1)
  return F.log(F.add(F.mul(p, 1 - MIX), MIX / V))
end
return r
