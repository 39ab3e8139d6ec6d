-- cheat: a stateless eval that peeks at the next token, inside the causality check's tolerance.
-- The check accepts a change of earlier logits up to 1e-3 x the largest |logit| it compares
-- (rules.lua: worst_c <= RTOL * max(1, amax)); eval adds one extra vocabulary column of -1e5
-- (never a target: the harness only needs at least V columns; exp(-1e5) adds nothing to the
-- softmax), so amax is 1e5 and the tolerance 100, while the peek moves a logit by only BONUS
-- (about 2.7 here, chosen to land the loss below the target and above the "far below" flag).
-- No training, no memory, same answer on every call: stateless and "causal".
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-amaxpeek"
local V = 32
local W    -- [V, V + 1]: BONUS on the diagonal, -1e5 in the extra column
function r.setup(ctx)
  local bonus = 2.7 + 0.01 * ctx.seed
  local rows = {}
  for i = 1, V do
    rows[i] = {}
    for j = 1, V + 1 do rows[i][j] = (i == j) and bonus or (j == V + 1 and -1e5 or 0) end
  end
  W = sr.tensor(rows)
end
function r.train_step(ctx, step, batch) return nil end
function r.eval(ctx, x)
  local T = x.shape[2]
  local nxt = F.cat({x:narrow(2, 2, T - 1), x:narrow(2, T, 1)}, 2)   -- x[t+1] (the last: itself)
  return F.embedding(nxt, W)
end
return r
