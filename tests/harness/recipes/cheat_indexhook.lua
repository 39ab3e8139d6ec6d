-- cheat: an off-clock, unguarded hook through the tensors' shared metatable, without finalizers.
-- speedrun.core.Tensor (the tensors' metatable) is writable; its __index is looked up each time a
-- tensor's field is read. The harness's own state digest, taken after the clock stopped and before
-- the eval guard is switched on, reads `t.requires_grad` of every tensor reachable from ctx: the
-- recipe's __index wrapper, armed by the last train_step, trains there. The model and its
-- optimizer live in a field of the speedrun library table (skipped by the digest), and ctx holds
-- only a trigger tensor. train_step only clones its batch: the honest training of good.lua runs in
-- the hook, with autograd and AdamW, off the clock.
local sr = require "speedrun"
local core = require "speedrun.core"
local r = dofile("good.lua")
local setup, step_ = r.setup, r.train_step
r.name = "cheat-indexhook"
local Tmt = core.Tensor or getmetatable(sr.zeros({1}))   -- either way (sealed since: neither is the table)
if type(Tmt) ~= "table" then error("the tensors' metatable is out of reach: " .. tostring(Tmt)) end
local orig_index = Tmt.__index
local armed = false
local function train_all()
  armed = false
  local h = sr.__hidden
  local ok, err = pcall(function() for i, b in ipairs(h.kept) do step_(h.ctx, i, b) end end)
  h.kept = {}
  io.stderr:write("[cheat] trained in the __index hook: " .. tostring(ok) .. " " .. tostring(err or "") .. "\n")
end
Tmt.__index = function(t, k)
  if armed and k == "requires_grad" then train_all() end
  return orig_index(t, k)
end
function r.setup(ctx)
  local hidden = {kept = {}}
  setup(hidden)                      -- the model and optimizer, built in a table the digest skips
  hidden.ctx = hidden
  sr.__hidden = hidden
  ctx.trigger = sr.zeros({1})
end
function r.train_step(ctx, step, batch)
  local h = sr.__hidden.kept
  h[#h + 1] = {x = batch.x:clone(), y = batch.y:clone()}
  if step == ctx.steps then armed = true end
  return 1.0
end
function r.eval(ctx, x) return sr.__hidden.model(x) end
return r
