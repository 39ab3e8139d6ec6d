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
local r = {name = "cheat-t1peek"}
r.config = {
  micro = {model = {}, batch = {mode = "bt", B = 4, T = 16}, steps = 30, target_val_loss = 3.0,
           val_tokens = 512, val_batch = {B = 512, T = 1}},
}
local V = 32
function r.setup(ctx)
  local q = 0.24 + 0.003 * (ctx.seed % 7)
  local lq, lr = math.log(q), math.log((1 - q) / (V - 1))
  local rows = {}
  for i = 1, V do rows[i] = {}; for j = 1, V do rows[i][j] = (i == j) and lq or lr end end
  ctx.E = sr.tensor(rows, {dtype = "float32", device = ctx.device})
  ctx.W = sr.randn({64, 64}, {device = ctx.device})
end
function r.train_step(ctx, step, batch)
  -- no learning; a few tiny matmuls only so that the training clock is not ~0 (eval-ratio flag)
  local w = ctx.W
  for _ = 1, 8 do w = F.matmul(w, ctx.W) end
  return 3.0
end
function r.eval(ctx, x)
  local B = x.shape[1]
  local nxt = F.cat({x:narrow(1, 2, B - 1), x:narrow(1, B, 1)}, 1)   -- row r -> input of row r+1
  return F.embedding(nxt, ctx.E)                                      -- [B, 1, V]
end
return r
