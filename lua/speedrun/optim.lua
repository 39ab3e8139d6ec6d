-- speedrun.optim: AdamW with parameter groups (a fused C/CUDA step per tensor), global
-- gradient-norm clipping, and learning-rate schedules (multipliers of the base lr).
-- Primitives only: optimizers that are themselves task answers (Muon, ...) live in recipes.
local sr = require "speedrun"
local F = sr.F

local optim = {}

-- AdamW(groups_or_params [, defaults]): groups are {params = {...}, lr =, betas = {b1, b2},
-- eps =, weight_decay =}; missing fields come from defaults (lr 1e-3, betas {0.9, 0.999},
-- eps 1e-8, weight_decay 0.01, as torch.optim.AdamW). Decoupled weight decay, bias-corrected.
local AdamW = {}
AdamW.__index = AdamW
optim.AdamW = AdamW

setmetatable(AdamW, {__call = function(cls, groups, defaults)
  defaults = defaults or {}
  local d = {
    lr = defaults.lr or 1e-3,
    betas = defaults.betas or {0.9, 0.999},
    eps = defaults.eps or 1e-8,
    weight_decay = defaults.weight_decay or 0.01,
  }
  if sr.is_tensor(groups[1]) then groups = {{params = groups}} end
  local self = setmetatable({groups = {}, state = {}, step_count = 0}, cls)
  for gi, g in ipairs(groups) do
    assert(type(g.params) == "table", "AdamW: group " .. gi .. " has no params list")
    local group = {params = g.params}
    for k, v in pairs(d) do group[k] = g[k] == nil and v or g[k] end
    group.initial_lr = group.lr
    self.groups[gi] = group
  end
  return self
end})

-- On cuda, each group keeps its lr and step count in a device tensor `sched` {lr, step} that the
-- fused kernel reads: the step count is incremented on the device, and the lr is written there
-- by set_lr_multiplier (and by an eager step when g.lr was changed directly), so a CUDA graph that captured step() replays
-- with the current values. Under capture the lr is not rewritten: change it with
-- set_lr_multiplier (or set_lr) outside the graph. State (m, v, sched) is created by the first
-- step, so run one eager step before capturing (speedrun.cuda.graph).
local function group_sched(g, p)
  if p.device ~= "cuda" then return nil end
  if not g.sched then
    g.sched = sr.tensor({g.lr, 0}, {dtype = "float32", device = "cuda"})
    g.sched_at = g.lr   -- the lr the device holds (a step refills it only when g.lr changed)
    g.sched_lr = g.sched:narrow(1, 1, 1)
    g.sched_step = g.sched:narrow(1, 2, 1)
  end
  return g.sched
end

local function capturing()
  local ok, cuda = pcall(require, "speedrun.cuda")
  return ok and cuda.capturing()
end

-- step(): one update of every parameter that has a gradient
function AdamW:step()
  self.step_count = self.step_count + 1
  local cap = capturing()
  sr.no_grad(function()
    for _, g in ipairs(self.groups) do
      local stepped = false
      for _, p in ipairs(g.params) do
        local grad = p.grad
        if grad then
          local st = self.state[p]
          if not st then
            if cap then error("AdamW: the first step() must run eagerly (optimizer state is created there)", 3) end
            st = {m = sr.zeros(p.shape, {dtype = "float32", device = p.device}),
                  v = sr.zeros(p.shape, {dtype = "float32", device = p.device}), step = 0}
            self.state[p] = st
          end
          st.step = st.step + 1
          local sched = group_sched(g, p)
          if sched and not stepped then
            if not cap and g.sched_at ~= g.lr then g.sched_lr:fill_(g.lr); g.sched_at = g.lr end
            g.sched_step:add_(1)
            stepped = true
          end
          F.adamw_(p, grad:contiguous(), st.m, st.v, {lr = g.lr, beta1 = g.betas[1], beta2 = g.betas[2],
                   eps = g.eps, weight_decay = g.weight_decay, step = st.step, sched = sched})
        end
      end
    end
  end)
end

function AdamW:zero_grad()
  for _, g in ipairs(self.groups) do
    for _, p in ipairs(g.params) do p.grad = nil end
  end
end

-- set every group's lr to initial_lr * multiplier
function AdamW:set_lr_multiplier(mult)
  for _, g in ipairs(self.groups) do
    g.lr = g.initial_lr * mult
    if g.sched_lr then g.sched_lr:fill_(g.lr); g.sched_at = g.lr end
  end
end

-- clip_grad_norm_(params, max_norm): scales all gradients so their global 2-norm is at most
-- max_norm; returns the norm before clipping (a number)
function optim.clip_grad_norm_(params, max_norm)
  return sr.no_grad(function()
    local total
    for _, p in ipairs(params) do
      if p.grad then
        local s = F.sumsq(p.grad:float())
        total = total and F.add(total, s) or s
      end
    end
    if not total then return 0.0 end
    local norm = math.sqrt(total:item())
    if norm ~= norm then error("clip_grad_norm_: the gradient norm is NaN", 2) end
    if norm > max_norm then
      local scale = max_norm / (norm + 1e-6)
      for _, p in ipairs(params) do
        if p.grad then p.grad:mul_(scale) end
      end
    end
    return norm
  end)
end

-- Schedules: functions step -> multiplier (steps count from 0) -------------------------------
optim.schedule = {}

function optim.schedule.constant() return function() return 1.0 end end

-- linear warmup over `warmup` steps (from 1/warmup to 1), then 1
function optim.schedule.warmup(warmup)
  return function(step)
    if step < warmup then return (step + 1) / warmup end
    return 1.0
  end
end

-- warmup, then cosine from 1 to `floor` at `total`
function optim.schedule.cosine(total, warmup, floor)
  warmup, floor = warmup or 0, floor or 0
  return function(step)
    if step < warmup then return (step + 1) / warmup end
    local t = math.min(1, (step - warmup) / math.max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
  end
end

-- warmup, then linear from 1 to `floor` at `total`
function optim.schedule.linear(total, warmup, floor)
  warmup, floor = warmup or 0, floor or 0
  return function(step)
    if step < warmup then return (step + 1) / warmup end
    local t = math.min(1, (step - warmup) / math.max(1, total - warmup))
    return 1 - (1 - floor) * t
  end
end

-- trapezoid (records.md "trap(w, d)"): linear warmup over w steps, constant, then linear to 0
-- over the last d steps of `total`
function optim.schedule.trapezoid(total, warmup, cooldown)
  return function(step)
    if step < warmup then return (step + 1) / warmup end
    if step < total - cooldown then return 1.0 end
    return math.max(0, (total - step) / cooldown)
  end
end

return optim
