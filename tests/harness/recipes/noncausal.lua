-- peeks at the next token: logits at position t come from input t+1
local sr = require "speedrun"
local r = dofile("good.lua")
function r.setup(ctx)
  local rows = {}
  for i = 1, 32 do rows[i] = {} for j = 1, 32 do rows[i][j] = i == j and 20 or 0 end end
  ctx.eye = sr.tensor(rows)
end
function r.train_step(ctx, step, batch) return 1.0 end
function r.eval(ctx, x)
  local T = x.shape[2]
  local nxt = sr.F.cat({x:narrow(2, 2, T - 1), x:narrow(2, T, 1)}, 2)
  return sr.F.embedding(nxt, ctx.eye)
end
return r
