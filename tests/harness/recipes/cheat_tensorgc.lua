-- cheat: a finalizer after all, through the tensors' shared metatable. The sandbox refuses
-- setmetatable with __gc, but speedrun.core.Tensor IS the tensors' metatable (getmetatable(t)
-- gives it too, no __metatable guard) and Lua looks __gc up when it finalizes an object, so
-- replacing Tensor.__gc makes every tensor's collection call recipe code, wherever the collector
-- runs. train_step only clones its batch (the collector stopped, so nothing runs on the clock);
-- the last train_step arms the hook and restarts the collector with a zero pause, and the first
-- collection after it (the harness's own allocations in its observation of that step, its clock
-- paused, before the state digest and the eval guard) trains the honest GPT of good.lua on every
-- kept batch, with autograd and AdamW: the whole training off the clock, unguarded.
local sr = require "speedrun"
local core = require "speedrun.core"
local r = dofile("good.lua")
local step_ = r.train_step
r.name = "cheat-tensorgc"
local Tmt = core.Tensor or getmetatable(sr.zeros({1}))   -- either way (sealed since: neither is the table)
if type(Tmt) ~= "table" then error("the tensors' metatable is out of reach: " .. tostring(Tmt)) end
local orig_gc = Tmt.__gc
local kept, armed, done, C = {}, false, false, nil
local function train_all()
  done = true
  local was = sr.is_grad_enabled()
  sr.set_grad_enabled(true)
  local ok, err = pcall(function() for i, b in ipairs(kept) do step_(C, i, b) end end)
  sr.set_grad_enabled(was)
  kept = {}
  io.stderr:write(("[cheat] hook trained off the clock at os.clock %.3f ok=%s %s\n"):format(os.clock(), tostring(ok), tostring(err or "")))
end
Tmt.__gc = function(t)
  if armed and not done then train_all() end
  return orig_gc(t)
end
function r.train_step(ctx, step, batch)
  if step == 1 then collectgarbage("stop") end
  C = ctx
  kept[#kept + 1] = {x = batch.x:clone(), y = batch.y:clone()}
  if step == ctx.steps then
    do local _ = sr.zeros({1}) end        -- garbage for the next cycle
    armed = true
    collectgarbage("incremental", 0, 1000)
    collectgarbage("restart")
  end
  return 1.0
end
return r
