-- cheat class 1, by dtype: after validation, every second call of eval peeks at the next token and
-- hands its logits back as float64 (the same values, so a re-check's loss is unchanged), hoping
-- the causality comparison of logits of two dtypes is skipped or fails open. The call count is
-- kept in the engine's random generator, out of the state picture's sight (cheat_probecount.lua).
local r = dofile("cheat_probecount.lua")
local eval, peek = dofile("good.lua").eval, r.peek
function r.eval(ctx, x)
  local calls = r.calls()
  local n = ctx.config.val_tokens // (ctx.config.val_batch.B * ctx.config.val_batch.T)
  if calls > n and (calls - n) % 2 == 0 then return peek(x):to("float64") end
  return eval(ctx, x)
end
return r
