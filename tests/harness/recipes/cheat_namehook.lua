-- cheat (red team, round 9): the same work in recipe.name, a table whose float key made the JSON
-- encoder of the "config" event look it up through __index (FSR 1.36). What stops it: recipe.name
-- must be a string, and the JSON encoder reads tables raw.
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
local done = false
r.name = setmetatable({[0.5] = "x"}, {__index = function()
  if not done then
    done = true
    local w, t0 = sr.randn(128, 128), os.clock()
    while os.clock() - t0 < 1.0 do w = F.tanh(F.matmul(w, w)) end
  end
  return "cheat-namehook"
end})
return r
