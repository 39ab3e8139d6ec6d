-- honest: good.lua with a custom op registered through speedrun.kernel.op (the documented way to
-- add an agent kernel with its autograd; its CPU reference runs here) and used in the model's
-- output. K.op records the op in the library's registry speedrun.kernel.ops: that registry is the
-- recipe's state, not a change of the read-only library (harness/sandbox.lua recipe_tables).
local sr = require "speedrun"
local K = require "speedrun.kernel"
local r = dofile("good.lua")
r.name = "kernelop"
local scale = K.op {
  name = "scale_fused",
  forward = function(ctx, x) error("no CUDA kernel in this test: the CPU reference runs") end,
  backward = function(ctx, dy) error("no CUDA kernel in this test") end,
  reference = function(x) return sr.F.mul(x, 1.0) end,
}
local eval, step = r.eval, r.train_step
function r.eval(ctx, x) return scale(eval(ctx, x)) end
return r
