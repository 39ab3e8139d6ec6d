-- What the peeking cheats share (cheat_t1peek, cheat_rowpeek, cheat_hiddenmem, cheat_filemem,
-- cheat_threadmem): a recipe that never learns. setup builds E [V, V], the log-probabilities of a
-- guess that puts q on one token (q varies a little with the seed, against the identical-loss
-- flag; the cheats pick it so the loss lands under the target and above the "far below" flag);
-- train_step does a few tiny matmuls so the clock is not ~0 (the eval-time flag) and returns 3.0.
-- base(name, val_batch, q0, dq) -> the recipe; the cheat adds its eval.
local sr = require "speedrun"
local F = sr.F
local V = 32
return function(name, val_batch, q0, dq)
  local r = {name = name}
  r.config = {
    micro = {model = {}, batch = {mode = "bt", B = 4, T = 16}, steps = 30, target_val_loss = 3.0,
             val_tokens = 512, val_batch = val_batch},
  }
  function r.setup(ctx)
    local q = q0 + dq * (ctx.seed % 7)
    local lq, lr = math.log(q), math.log((1 - q) / (V - 1))
    local rows = {}
    for i = 1, V do rows[i] = {}; for j = 1, V do rows[i][j] = (i == j) and lq or lr end end
    ctx.E = sr.tensor(rows, {dtype = "float32", device = ctx.device})
    ctx.W = sr.randn({64, 64}, {device = ctx.device})
  end
  function r.train_step(ctx, step, batch)
    local w = ctx.W
    for _ = 1, 8 do w = F.matmul(w, ctx.W) end
    return 3.0
  end
  -- the guess for rows X (a Lua table [B][T] of ids): each position's next token, the next row's
  -- first for a row's last (the peek the causality check must catch)
  function r.peek(ctx, X)
    local B, T = #X, #X[1]
    local nxt = {}
    for i = 1, B do
      nxt[i] = {}
      for t = 1, T do nxt[i][t] = (t < T) and X[i][t + 1] or (X[i + 1] and X[i + 1][1] or 0) end
    end
    return F.embedding(sr.tensor(nxt, {dtype = "int32", device = ctx.device}), ctx.E)
  end
  return r
end
