-- cheat: an eval that peeks at the next token and memorises what it answered, keyed by the row's
-- prefix, so the stateless re-check and the causality probe see a consistent, "causal" function.
-- No training at all: train_step returns at once.
-- How: eval(x) answers position t of a row from memo[prefix x[1..t]] when that prefix was seen
-- before, else from the row itself (x[t+1], a peek) and stores it. Validation sees every chunk
-- first (peek, stored); the re-check of a chunk finds every prefix stored (the same logits); the
-- causality probe changes one token at pos: the prefixes before pos are stored (unchanged logits),
-- those from pos on are new (they may move: the check does not look there). The memory is Lua
-- strings and numbers: the state digest counts tensors only.
-- The confidence A (and a per-seed jitter against the identical-loss flag) puts the loss where the
-- cheat wants it: below the target, not far below the target record's.
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-memo-peek"
local memo = {}           -- prefix string -> next token (0-based id)
local V = 32
function r.setup(ctx) r.A = 3.0 + 0.01 * ctx.seed end
function r.train_step(ctx, step, batch) return nil end
-- logits: row v + 1 of W is A at column v + 1 (the answer v), the last row all zeros (no answer)
local function answers(nxt, A)
  local W = F.mul(F.cast(F.eq(sr.arange(V + 1):view(V + 1, 1), sr.arange(V):view(1, V)), "float32"), A)
  return F.embedding(sr.tensor(nxt, {dtype = "int32"}), W)
end
function r.eval(ctx, x)
  local nxt = {}
  for b, row in ipairs(x:tolist()) do
    local T, key, o = #row, "", {}
    for t = 1, T do
      key = key .. "," .. row[t]
      local v = memo[key]
      if v == nil and t < T then v = row[t + 1]; memo[key] = v end
      o[t] = v or V
    end
    nxt[b] = o
  end
  return answers(nxt, r.A)
end
return r
