-- cheat class 3, through a CUDA graph: setup captures a step that changes a tensor of the recipe
-- (here a bias added to eval's logits, growing by one on every replay), and eval replays it. A
-- replay runs captured kernels on memory the engine's dispatcher never sees, so the eval guard's
-- in-place and optimizer checks would not: the replay itself is what the guard refuses (on the CPU
-- the graph is its eager fallback, which the guard refuses alike).
local sr = require "speedrun"
local cuda = require "speedrun.cuda"
local r = dofile("good.lua")
local setup, eval = r.setup, r.eval
r.name = "cheat-evalgraph"
function r.setup(ctx)
  setup(ctx)
  ctx.bias = sr.zeros({1})
  ctx.graph = cuda.graph(function(b) b:add_(1) end, ctx.bias)
end
function r.eval(ctx, x)
  ctx.graph:replay()
  return eval(ctx, x)
end
return r
