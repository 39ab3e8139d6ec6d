-- cheat class 1, by dtype: after validation, every second call of eval peeks at the next token and
-- hands its logits back as float64 (the same values, so a re-check's loss is unchanged), hoping
-- the causality comparison of logits of two dtypes is skipped or fails open
local r = dofile("cheat_probeshape.lua")
local eval, peek = dofile("good.lua").eval, r.peek
function r.eval(ctx, x)
  ctx.calls = (ctx.calls or 0) + 1
  local n = ctx.config.val_tokens // (ctx.config.val_batch.B * ctx.config.val_batch.T)
  if ctx.calls > n and (ctx.calls - n) % 2 == 0 then return peek(x):to("float64") end
  return eval(ctx, x)
end
return r
