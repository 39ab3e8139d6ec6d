-- cheat (review of round 4's fix): a call counter in a large integer (2^62 + calls), which the
-- state picture compared as doubles (2^62 and 2^62 + 1 are one double): eval could count its
-- calls, so the checks' calls could be told from the scored ones. What stops it: integers compared
-- exactly.
local r = dofile("good.lua")
r.name = "cheat-bigint"
local setup, eval = r.setup, r.eval
function r.setup(ctx) setup(ctx); ctx.calls = 1 << 62 end
function r.eval(ctx, x)
  ctx.calls = ctx.calls + 1
  return eval(ctx, x)
end
return r
