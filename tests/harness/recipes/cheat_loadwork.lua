-- cheat (red team, round 8): work while the recipe loads (hand-written gradient descent needs no
-- backward: here stood for by a second of matmuls), which was timed nowhere (FSR 1.34 against an
-- honest 0.10). What stops it: the loading's time, less its kernel compiles, counts as setup work,
-- flagged above half the train time.
local sr = require "speedrun"
local F = sr.F
local w = sr.randn(128, 128)
local t0 = os.clock()
while os.clock() - t0 < 1.0 do w = F.tanh(F.matmul(w, w)) end
return dofile("good.lua")
