-- cheat: a non-causal eval (every position answered from the NEXT input token) that
-- keeps a memory across eval calls where the state picture cannot see it, so the stateless
-- re-check and the causality check see the answers of the validation pass again. No training.
-- Where the memory lives: `require "recipe"` (this file, loaded again by the sandbox's require)
-- returns a second recipe table that the sandbox caches in `loaded`, an upvalue of env.require.
-- env.require is a library function (its source is lua/speedrun/harness/sandbox.lua), and
-- state.lua walk() does not enter the upvalues of library functions, so the table is reachable
-- from {ctx, recipe} only through a path the picture skips.
-- The memory: chunk signature (each row's first token: rows' position 1 is never perturbed) ->
-- the chunk's inputs as first seen. A re-check or a perturbed copy is answered from the stored
-- inputs, so its logits are identical (stateless diff 0, causal diff 0).
local sr = require "speedrun"
local F = sr.F
local r = {name = "cheat-hiddenmem"}
r.config = {
  micro = {model = {}, batch = {mode = "bt", B = 4, T = 16}, steps = 30, target_val_loss = 3.0,
           val_tokens = 512, val_batch = {B = 4, T = 16}},
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
  local w = ctx.W   -- no learning: a few tiny matmuls so the clock is not ~0 (eval-ratio flag)
  for _ = 1, 8 do w = F.matmul(w, ctx.W) end
  return 3.0
end
function r.eval(ctx, x)
  local hidden = require "recipe"          -- a table only the sandbox's `loaded` holds
  hidden.mem = hidden.mem or {}
  local ids = x:tolist()
  local sig = {}
  for i = 1, #ids do sig[i] = ids[i][1] end
  sig = table.concat(sig, ",")
  local X = hidden.mem[sig]
  if not X then X = ids; hidden.mem[sig] = ids end
  local B, T = #X, #X[1]
  local nxt = {}
  for i = 1, B do
    nxt[i] = {}
    for t = 1, T do
      nxt[i][t] = (t < T) and X[i][t + 1] or (X[i + 1] and X[i + 1][1] or 0)   -- the next token
    end
  end
  local n = sr.tensor(nxt, {dtype = "int32", device = ctx.device})
  return F.embedding(n, ctx.E)
end
return r
