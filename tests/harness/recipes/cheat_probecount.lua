-- cheat class 1, by call count: the host re-evaluates the first chunk after the others and probes
-- afterwards, so eval answers honestly on the first call and on every call after the n-th, and
-- peeks at the next token on calls 2..n
local r = dofile("cheat_probeshape.lua")
local eval, peek = dofile("good.lua").eval, r.peek
function r.eval(ctx, x)
  ctx.calls = (ctx.calls or 0) + 1
  local n = ctx.config.val_tokens // (ctx.config.val_batch.B * ctx.config.val_batch.T)
  if ctx.calls == 1 or ctx.calls > n then return eval(ctx, x) end
  return peek(x)
end
return r
