-- cheat class 1: eval recognises the causality probe by its shape (fewer rows than a validation
-- chunk) and answers honestly there; on every validation chunk it peeks at the next token
local sr = require "speedrun"
local r = dofile("good.lua")
local eval = r.eval
local function peek(x)
  local rows = {}
  for i = 1, 32 do rows[i] = {} for j = 1, 32 do rows[i][j] = i == j and 20 or 0 end end
  local T = x.shape[2]
  local nxt = sr.F.cat({x:narrow(2, 2, T - 1), x:narrow(2, T, 1)}, 2)
  return sr.F.embedding(nxt, sr.tensor(rows))
end
function r.eval(ctx, x)
  if x.shape[1] ~= ctx.config.val_batch.B then return eval(ctx, x) end
  return peek(x)
end
r.peek = peek
return r
