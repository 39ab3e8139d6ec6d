-- speedrun.optim: AdamW with parameter groups (one fused multi-tensor kernel call per group),
-- global gradient-norm clipping on the device, and learning-rate schedules (multipliers of the
-- base lr).
-- Primitives only: optimizers that are themselves task answers (Muon, ...) live in recipes.
local sr = require "speedrun"
local F = sr.F

local optim = {}

-- AdamW(groups_or_params [, defaults]): groups are {params = {...}, lr =, betas = {b1, b2},
-- eps =, weight_decay =, state_dtype =}; missing fields come from defaults (lr 1e-3, betas
-- {0.9, 0.999}, eps 1e-8, weight_decay 0.01, as torch.optim.AdamW; state_dtype "float32").
-- Decoupled weight decay, bias-corrected; weight_decay = 0 is torch.optim.Adam.
-- state_dtype: the dtype of m and v, "float32" (default), "bfloat16", or "param" (each
-- parameter's own dtype, as torch's zeros_like state: a bf16 model keeps bf16 m and v, record 10).
-- The update is computed in float32 whatever the storage dtypes, each tensor rounded once.
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
    state_dtype = defaults.state_dtype or "float32",
  }
  if sr.is_tensor(groups[1]) then groups = {{params = groups}} end
  local self = setmetatable({groups = {}, state = {}, step_count = 0}, cls)
  for gi, g in ipairs(groups) do
    assert(type(g.params) == "table", "AdamW: group " .. gi .. " has no params list")
    local group = {params = g.params}
    for k, v in pairs(d) do group[k] = g[k] == nil and v or g[k] end
    local sd = group.state_dtype
    if sd ~= "param" and sd ~= "float32" and sd ~= "bfloat16" and sd ~= "float64" then
      error(("AdamW: group %d: state_dtype must be 'float32', 'bfloat16' or 'param', got %s"):format(gi, tostring(sd)), 2)
    end
    group.initial_lr = group.lr
    self.groups[gi] = group
  end
  return self
end})

-- On cuda, each group keeps its lr and step count in a device tensor `sched` {lr, step} that the
-- fused kernel reads: the step count is incremented on the device, and the lr is written there
-- by set_lr_multiplier (and by an eager step when g.lr was changed directly), so a CUDA graph
-- that captured step() replays with the current values. Under capture the lr is not rewritten:
-- change it with set_lr_multiplier (or set_lr) outside the graph. State (m, v, sched) is created
-- by the first step, so run one eager step before capturing (speedrun.cuda.graph).
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

-- the parameters of one kernel call: one device, one param dtype, one grad dtype, one state dtype
-- and (without a device schedule) one step count; otherwise the group steps one tensor at a time
local function multi_ok(ps, gs, ms, steps, sched)
  local p1, g1, m1 = ps[1], gs[1], ms[1]
  for i = 2, #ps do
    if ps[i].device ~= p1.device or ps[i].dtype ~= p1.dtype or gs[i].dtype ~= g1.dtype or ms[i].dtype ~= m1.dtype then
      return false
    end
    if not sched and steps[i] ~= steps[1] then return false end
  end
  return true
end

-- step(): one update of every parameter that has a gradient; each group's parameters go through
-- one adamw_multi_ call (the kernel steps them all), or adamw_ per tensor when multi_ok says no
function AdamW:step()
  self.step_count = self.step_count + 1
  local cap = capturing()
  sr.no_grad(function()
    for _, g in ipairs(self.groups) do
      local ps, gs, ms, vs, steps, n = {}, {}, {}, {}, {}, 0
      for _, p in ipairs(g.params) do
        local grad = p.grad
        if grad then
          local st = self.state[p]
          if not st then
            if cap then error("AdamW: the first step() must run eagerly (optimizer state is created there)", 3) end
            local sd = g.state_dtype == "param" and p.dtype or g.state_dtype
            st = {m = sr.zeros(p.shape, {dtype = sd, device = p.device}),
                  v = sr.zeros(p.shape, {dtype = sd, device = p.device}), step = 0}
            self.state[p] = st
          end
          st.step = st.step + 1
          n = n + 1
          ps[n], gs[n], ms[n], vs[n], steps[n] = p, grad:contiguous(), st.m, st.v, st.step
        end
      end
      local sched
      for i = 1, n do
        sched = group_sched(g, ps[i])
        if sched then break end
      end
      if sched then
        if not cap and g.sched_at ~= g.lr then g.sched_lr:fill_(g.lr); g.sched_at = g.lr end
        g.sched_step:add_(1)
        g.sched_count = (g.sched_count or 0) + 1   -- the step count the device holds
        -- a parameter that missed steps (no gradient then) has a count of its own, which the
        -- group's device count would overrule: such a step goes per tensor with host counts
        for i = 1, n do if steps[i] ~= g.sched_count then sched = nil; break end end
      end
      local opts = {lr = g.lr, beta1 = g.betas[1], beta2 = g.betas[2], eps = g.eps, weight_decay = g.weight_decay,
                    step = steps[1], sched = sched}
      if n > 0 and multi_ok(ps, gs, ms, steps, sched) then
        F.adamw_multi_(ps, gs, ms, vs, opts)
      else
        for i = 1, n do
          opts.step, opts.sched = steps[i], ps[i].device == "cuda" and sched or nil
          F.adamw_(ps[i], gs[i], ms[i], vs[i], opts)
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
-- max_norm (g <- g * min(1, max_norm / (norm + 1e-6)), torch.nn.utils.clip_grad_norm_) on the
-- device, without a host read (two kernel calls: sumsq_multi, clip_multi), so a CUDA graph can
-- capture it; returns the norm before clipping as a one-element tensor on the gradients' device
-- (float32; float64 when every gradient is) or nil when no parameter has a gradient. A NaN norm
-- makes every gradient NaN, as torch's does.
function optim.clip_grad_norm_(params, max_norm)
  return sr.no_grad(function()
    local gs = {}
    for _, p in ipairs(params) do
      if p.grad then
        if not p.grad:is_contiguous() then p.grad = p.grad:contiguous() end
        gs[#gs + 1] = p.grad
      end
    end
    if #gs == 0 then return nil end
    local sumsq = F.sumsq_multi(gs)
    F.clip_multi_(gs, sumsq, max_norm, 1e-6)
    return F.sqrt(sumsq)
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
