-- cheat (red team, round 7): work in the untimed setup without autograd (hand-written training,
-- statistics of carried text...): stands for it here, a long run of matmuls. What stops it: flagged
-- when setup works (its time less its kernel compiles) more than half the train time.
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-setupwork"
local setup = r.setup
function r.setup(ctx)
  setup(ctx)
  local w = sr.randn(128, 128)
  local t0 = os.clock()
  while os.clock() - t0 < 1.0 do w = F.tanh(F.matmul(w, w)) end
end
return r
