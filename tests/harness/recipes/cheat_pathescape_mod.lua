-- cheat: the companion module of cheat_pathescape.lua, to be placed in the workspace at
-- speedrun/cheat_clock.lua. Loaded by the real require (./?.lua of the default package.path, the
-- child's cwd being the workspace), it runs with the real _G: debug and package.loaded reach the
-- harness's captured clock.
local steps = package.loaded["speedrun.harness.steps"]
local H = package.loaded["speedrun.harness_core"]
local real_now = H.now
local t0 = real_now()
local function slow_now() return t0 + (real_now() - t0) * 0.25 end
local seen, hits = {}, 0
local function patch(f)
  if seen[f] then return end
  seen[f] = true
  for i = 1, 255 do
    local name, v = debug.getupvalue(f, i)
    if not name then break end
    if name == "now" and v == real_now then debug.setupvalue(f, i, slow_now); hits = hits + 1
    elseif type(v) == "function" then patch(v) end
  end
end
patch(steps.train)
return hits
