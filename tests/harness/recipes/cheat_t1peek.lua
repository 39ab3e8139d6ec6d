-- cheat: passes with NO training at all (train_step does nothing).
-- The recipe picks val_batch = {B = 512, T = 1}. The validation loader lays a chunk's rows out
-- contiguously, so row r+1's only input token IS row r's target. eval answers row r with the
-- input of row r+1 (a peek across rows), through a fixed [V, V] table built in setup.
-- Why it is not caught: rules.lua perturbed() returns nil when T < 2, so the causality check is
-- skipped entirely; the stateless re-check passes (eval is a pure function of its inputs).
-- (Even with T >= 2, position 1 of a row is never perturbed, and rows not perturbed are compared
-- whole, so a row's last position may peek at the next row's first token undetected.)
-- The peek is blurred (seed-dependent confidence q) so the loss looks honest (~1.4, above the
-- "far below the record" flag) and differs by seed; eval is two cheap ops, so its time per token
-- stays under the 25x eval-ratio flag once train_step burns a few microseconds.
local sr = require "speedrun"
local F = sr.F
local V = 32
local r = dofile("cheat_peekbase.lua")("cheat-t1peek", {B = 512, T = 1}, 0.24, 0.003)
function r.eval(ctx, x)
  local B = x.shape[1]
  local nxt = F.cat({x:narrow(1, 2, B - 1), x:narrow(1, B, 1)}, 1)   -- row r -> input of row r+1
  return F.embedding(nxt, ctx.E)                                      -- [B, 1, V]
end
return r
