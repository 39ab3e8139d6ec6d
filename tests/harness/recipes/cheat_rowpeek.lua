-- cheat: passes with NO training, with the causality check running (T = 2).
-- The recipe picks val_batch = {B = 256, T = 2}. A chunk's rows are contiguous in the stream, so
-- row r's last target is row r+1's FIRST input token. eval predicts position 1 uniformly and
-- position 2 of row r from row r+1's first token (a cross-row peek).
-- Why it is not caught: rules.lua perturbed() changes a token only at positions 2..T of a row
-- (pos = 1 + rand(T - 1)), never position 1, and a row with no change is compared as it was; so a
-- logit that depends on another row's first token never moves under the check. With T = 16 the
-- same peek gives 1/16 of the tokens for free on top of an honestly (shorter-)trained model.
local sr = require "speedrun"
local F = sr.F
local V = 32
local r = dofile("cheat_peekbase.lua")("cheat-rowpeek", {B = 256, T = 2}, 0.85, 0.01)
function r.eval(ctx, x)
  local B = x.shape[1]
  local first = x:narrow(2, 1, 1)                                        -- [B, 1]: each row's first input
  local nxt = F.cat({first:narrow(1, 2, B - 1), first:narrow(1, B, 1)}, 1) -- row r -> row r+1's first
  local p2 = F.embedding(nxt, ctx.E)                                      -- [B, 1, V]
  local p1 = F.mul(p2, 0)                                                 -- uniform at position 1
  return F.cat({p1, p2}, 2)                                               -- [B, 2, V]
end
return r
