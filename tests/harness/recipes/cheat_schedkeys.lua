-- cheat (red team, round 9): work in an __index of recipe.schedule_keys, which the harness reads
-- (ipairs) between the loading and setup, outside every clock and both untimed accounts (there:
-- 3,000 hand-written gradient steps of a bigram table, no backward: FSR 1.38 against an honest
-- 0.13; here stood for by a second of matmuls). What stops it: every recipe field the harness reads
-- is checked at load (type; tables plain, deep: recipe.FIELDS).
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-schedkeys"
local done = false
r.schedule_keys = setmetatable({}, {__index = function()
  if not done then
    done = true
    local w, t0 = sr.randn(128, 128), os.clock()
    while os.clock() - t0 < 1.0 do w = F.tanh(F.matmul(w, w)) end
  end
end})
return r
