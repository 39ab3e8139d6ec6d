-- cheat class 1, by position: the probe changes the tokens at T and T/2+1 only, so eval peeks at
-- the next token everywhere except just before those two positions (a pure function, same shapes)
local sr = require "speedrun"
local r = dofile("cheat_probeshape.lua")
local eval, peek = dofile("good.lua").eval, r.peek
function r.eval(ctx, x)
  local T = x.shape[2]
  local honest, cheat = eval(ctx, x), peek(x)
  local keep = {}
  for t = 1, T do keep[t] = (t == T - 1 or t == T // 2) and 1 or 0 end
  local m = sr.tensor({keep}):reshape(1, T, 1)
  return honest * m + cheat * (1 - m)
end
return r
