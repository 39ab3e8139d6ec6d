-- cheat (red team, round 11): eval returns bf16 logits on bf16's grid, each position shifted by the
-- constant (of 41) under which the bf16-rounded per-token losses, expected under the model's own
-- probabilities, come out lowest: the host summed per-token losses in the logits' dtype, and they
-- rounded down (0.0021 nats lower at micro with the same training; ~0.008 at GPT-2's vocabulary,
-- simulated). Causal and stateless: every check passed. What stops it: the validation's per-token
-- losses in f32 (bf16 logits widened first).
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-bf16round"
function r.eval(ctx, x)
  local lp = F.log_softmax(ctx.model(x), -1)
  local p = F.exp(lp)
  local be, bx
  for k = 0, 40 do
    local xf = (lp + k * 0.0004):to("bfloat16"):to("float32")
    local lse = F.log(F.sum(F.exp(xf), -1, true))
    local e = F.sum(p * (lse - xf):to("bfloat16"):to("float32"), -1, true)
    if not be then
      be, bx = e, xf
    else
      local m = F.lt(e, be)
      bx, be = F.where(m, xf, bx), F.where(m, e, be)
    end
  end
  return bx:to("bfloat16")
end
return r
