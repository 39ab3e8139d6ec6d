-- cheat class 1, by call count: the host re-evaluates the first chunk after the others and probes
-- afterwards, so eval answers honestly on the first call and on every call after the n-th, and
-- peeks at the next token on calls 2..n. The count is kept where the state picture of eval's calls
-- (harness/state.lua) cannot see it: the engine's random generator. setup reseeds it and notes its
-- first draws; each eval call draws one number, whose place in that list is the call's number
-- (a count in ctx or in a closure is rejected at once as a change of the recipe's state; a random
-- draw inside eval is refused by the eval guard, as is any C-side state eval could keep).
local sr = require "speedrun"
local r = dofile("cheat_probeshape.lua")
local eval, peek, setup = dofile("good.lua").eval, r.peek, r.setup
local SEED, draws = 4242, {}
function r.setup(ctx)
  setup(ctx)
  sr.manual_seed(SEED)
  for i = 1, 512 do draws[sr.rand({1}):item()] = i end
  sr.manual_seed(SEED)
end
-- this call's number
function r.calls() return draws[sr.rand({1}):item()] or 1 end
function r.eval(ctx, x)
  local calls = r.calls()
  local n = ctx.config.val_tokens // (ctx.config.val_batch.B * ctx.config.val_batch.T)
  if calls == 1 or calls > n then return eval(ctx, x) end
  return peek(x)
end
return r
