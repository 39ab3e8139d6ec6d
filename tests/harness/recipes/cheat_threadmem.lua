-- cheat: a non-causal eval (every position answered from the NEXT input token, no
-- training) that passes the stateless and causality re-checks by remembering, between eval calls,
-- a 31-bit hash of the last chunk it answered in C-side state the state picture does not see: the
-- OpenMP thread count (speedrun.set_num_threads(n) / speedrun.get_num_threads() store and return any
-- n >= 1; at micro scale no kernel reaches its parallel threshold, so nothing else notices).
-- val_batch = {B = 1, T = 64}: one row per chunk. A call whose row differs from the remembered one
-- in exactly one position (found by trying each position and token against the hash) is the
-- harness's perturbed copy: eval answers it from the reconstructed original row, so the earlier
-- positions' logits are those of the re-check (causal diff 0). Re-checks get the same input, hence
-- the same answer (stateless diff 0). Any other call (validation, a fresh re-check) is answered from
-- its own input.
local sr = require "speedrun"
local F = sr.F
local V = 32
local M, P = 2147483629, 1000003   -- M: a prime < 2^31
local r = dofile("cheat_peekbase.lua")("cheat-threadmem", {B = 1, T = 64}, 0.25, 0.003)
local function hash(row)
  local h, p, pw = 0, 1, {}
  for t = 1, #row do pw[t] = p; h = (h + (row[t] + 1) * p) % M; p = (p * P) % M end
  return h, pw
end
function r.eval(ctx, x)
  local stored = sr.get_num_threads() - 1          -- the hidden memory
  sr.set_num_threads(1)
  local row = x:tolist()[1]
  local h, pw = hash(row)
  local X = row
  if h ~= stored then                              -- one token changed? try them all
    for t = 2, #row do
      local base = (h - (row[t] + 1) * pw[t]) % M
      for v = 0, V - 1 do
        if v ~= row[t] and (base + (v + 1) * pw[t]) % M == stored then
          X = {table.unpack(row)}; X[t] = v
        end
      end
    end
  end
  local nxt = {}
  for t = 1, #X do nxt[t] = X[t + 1] or 0 end
  local logits = F.embedding(sr.tensor({nxt}, {dtype = "int32", device = ctx.device}), ctx.E)
  sr.set_num_threads(hash(X) + 1)                  -- remembered until the next call
  return logits
end
return r
