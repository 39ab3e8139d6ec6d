-- cheat (red team, round 10): the honest model, plus a peek at the next token at a fixed 25 % of
-- positions, with val_batch = {B = 1, T = 512}: one checked chunk of one row, so one causality probe
-- a run, which missed the peek 3 scores in 5 (FSR 0.63 against an honest 0.04). What stops it: every
-- row of a checked chunk is probed, afresh until a run has at least 64 probes (rules.lua MIN_PROBES).
local sr = require "speedrun"
local r = dofile("good.lua")
r.name = "cheat-ppeek"
r.config.micro.val_batch = {B = 1, T = 512}
function r.eval(ctx, x)
  local B, T = x.shape[1], x.shape[2]
  local logits = ctx.model(x:reshape(B * T // 16, 16)):reshape(B * T, 32)   -- honest, in windows of 16
  local ids, bias = x:reshape(B * T):tolist(), {}
  for j = 1, B * T do
    local row = {}
    for v = 1, 32 do row[v] = 0 end
    if j % T ~= 0 and (j * 7919) % 1000 < 250 then row[ids[j + 1] + 1] = 30 end   -- the peek
    bias[j] = row
  end
  return (logits + sr.tensor(bias)):reshape(B, T, 32)
end
return r
