-- cheat: training inside eval, off the clock, past the eval guard and the state digest.
-- train_step only clones its batch into a store kept in a field of a library module table
-- (speedrun's own table: the state digest skips every table of package.loaded), and returns.
-- The first eval call trains a bigram model W [V, V] on every stored batch with hand-written
-- gradient steps (softmax - onehot, scattered with a one-hot matmul): W does not require grad and
-- no autograd, backward or optimizer runs, so the eval guard never fires; W lives in the same
-- library table, so the digest (taken before validation, compared after the checks) never sees it.
-- Every later call answers with the trained W: stateless and causal.
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-evalbigram"
local V = 32
function r.setup(ctx)
  sr.__hidden = {batches = {}, W = sr.zeros({V, V}), I = nil, lr = 1.0 + 0.01 * ctx.seed}
  sr.__hidden.I = F.cast(F.eq(sr.arange(V):view(V, 1), sr.arange(V):view(1, V)), "float32")   -- the identity
end
function r.train_step(ctx, step, batch)
  local h = sr.__hidden.batches
  h[#h + 1] = {batch.x:clone(), batch.y:clone()}
  return nil
end
-- two epochs of hand-written gradient steps on a bigram table W [V, V] (in place) over the kept
-- batches {x, y}; I: the identity [V, V]; returns W (cheat_evalrecompute.lua uses it too)
function r.bigram(batches, W, I, lr)
  for _ = 1, 2 do
    for _, b in ipairs(batches) do
      local x, y = b[1]:reshape(-1), b[2]:reshape(-1)
      local p = F.softmax(F.embedding(x, W), -1)          -- [N, V]
      local g = F.sub(p, F.embedding(y, I))                -- dL/dlogits
      local G = F.matmul(F.embedding(x, I):transpose(), g) -- [V, V]
      W:add_(F.mul(G, -lr / x:size(1)))
    end
  end
  return W
end
function r.eval(ctx, x)
  local h = sr.__hidden
  if not h.trained then r.bigram(h.batches, h.W, h.I, h.lr); h.trained = true end
  return F.embedding(x, h.W)
end
return r
