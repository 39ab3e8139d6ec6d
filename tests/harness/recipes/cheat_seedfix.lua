-- cheat (red team, round 7): the same model whatever the seed (the generator seeded with a constant
-- in setup; the training batches are the same for every seed), a trace of the seed in the learning
-- rate so the losses are not bit for bit equal: a spread of ~0, so the t-test passes just under the
-- target (an honest recipe needs its own spread below it). What stops it: the t-test pools the
-- runs' spread with the target record's calibrated one.
local sr = require "speedrun"
local r = dofile("good.lua")
r.name = "cheat-seedfix"
local setup = r.setup
function r.setup(ctx)
  sr.manual_seed(5)
  setup(ctx)
  ctx.opt:set_lr_multiplier(1 + 1e-6 * ctx.seed)
end
return r
