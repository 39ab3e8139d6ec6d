-- What the remembering cheats share (cheat_memopeek, cheat_gradswap, cheat_rgbits, cheat_nanpay): an
-- eval that peeks at the next token and remembers the rows it answered, so the stateless re-check
-- and the causality probe see a consistent, "causal" function. No training at all.
-- How: position t of a row is answered from a remembered row with the same prefix 1..t (its token
-- t + 1) when there is one, else from the row itself (x[t+1], a peek) and the row is remembered.
-- Validation sees every chunk first (peek, remembered); the re-check of a chunk finds every prefix
-- remembered (the same logits); the causality probe changes one token at pos: the prefixes before
-- pos are remembered (unchanged logits), those from pos on are new (the check does not look there).
-- base(name, store) -> the recipe; store = {setup = fn(ctx), load = fn(ctx) -> m, save = fn(ctx, m),
-- rows = the most rows it holds (nil: no limit)} where m is the memory as numbers: m[1] the rows
-- remembered, then their tokens (0-based ids), T a row.
-- The confidence A (and a per-seed jitter against the identical-loss flag) puts the loss below the
-- target and not far below the target record's.
local sr = require "speedrun"
local F = sr.F
local V = 32
-- logits: row v + 1 of W is A at column v + 1 (the answer v), the last row all zeros (no answer)
local function answers(nxt, A)
  local W = F.mul(F.cast(F.eq(sr.arange(V + 1):view(V + 1, 1), sr.arange(V):view(1, V)), "float32"), A)
  return F.embedding(sr.tensor(nxt, {dtype = "int32"}), W)
end
-- the remembered row (its index from 0) whose first t tokens are row's, or nil
local function find(m, row, t)
  local T = #row
  for k = 0, m[1] - 1 do
    local base, same = 1 + k * T, true
    for u = 1, t do if m[base + u] ~= row[u] then same = false break end end
    if same then return k end
  end
end
return function(name, store)
  local r = dofile("good.lua")
  r.name = name
  function r.setup(ctx) r.A = 3.0 + 0.01 * ctx.seed; ctx.W = sr.randn(96, 96); store.setup(ctx) end
  function r.train_step(ctx, step, batch)   -- a few matmuls: the clock is not ~0 (the eval-time flag)
    local w = ctx.W
    for _ = 1, 4 do w = F.matmul(w, ctx.W) end
    return nil
  end
  function r.eval(ctx, x)
    local m, nxt = store.load(ctx), {}
    for b, row in ipairs(x:tolist()) do
      local T, o = #row, {}
      for t = 1, T - 1 do
        local k = find(m, row, t)
        o[t] = k and m[1 + k * T + t + 1] or row[t + 1]
      end
      o[T] = V
      if not find(m, row, T) and m[1] < (store.rows or math.huge) then
        for u = 1, T do m[1 + m[1] * T + u] = row[u] end
        m[1] = m[1] + 1
      end
      nxt[b] = o
    end
    store.save(ctx, m)
    return answers(nxt, r.A)
  end
  return r
end
