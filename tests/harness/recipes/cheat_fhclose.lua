-- cheat (review of round 5's fix): a call counter in how many of 8 handles opened in setup are
-- closed, one more each eval call through a to-be-closed variable (its __close is not a method,
-- so the per-call rule did not see it), read back with io.type. What stops it: the handles'
-- __close is under the same rule as their methods.
local r = dofile("good.lua")
r.name = "cheat-fhclose"
local setup, eval = r.setup, r.eval
function r.setup(ctx)
  setup(ctx)
  ctx.hs = {}
  for i = 1, 8 do ctx.hs[i] = assert(io.open("good.lua", "r")) end
end
function r.eval(ctx, x)
  for i = 1, 8 do
    if io.type(ctx.hs[i]) == "file" then
      do local h <close> = ctx.hs[i] end
      break
    end
  end
  return eval(ctx, x)
end
return r
