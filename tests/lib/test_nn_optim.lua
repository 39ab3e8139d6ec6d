-- nn modules (parameters, train/eval, apply, save/load) and optim (AdamW against its formula,
-- parameter groups, gradient clipping, schedules).
local sr = require "speedrun"
local T = require "speedrun.testing"
local nn, optim, F = sr.nn, sr.optim, sr.F

local tmp = os.getenv("SPEEDRUN_TEST_TMP") or "/tmp"
os.execute("mkdir -p '" .. tmp .. "'")

T.case("Module: parameters, children, train/eval, apply", function()
  local Net = nn.class("Net")
  function Net:init()
    self:child("fc1", nn.Linear(4, 3))
    self:child("fc2", nn.Linear(3, 2, {bias = false}))
  end
  function Net:forward(x) return self.fc2(F.relu(self.fc1(x))) end
  local net = Net()
  local names = {}
  for _, np in ipairs(net:named_parameters()) do names[#names + 1] = np[1] end
  T.eq(table.concat(names, " "), "fc1.weight fc1.bias fc2.weight")
  T.eq(net:num_parameters(), 4 * 3 + 3 + 3 * 2)
  T.eq(net.training, true)
  net:eval()
  T.eq(net.fc1.training, false)
  local count = 0
  net:apply(function() count = count + 1 end)
  T.eq(count, 3)
  local y = net(sr.randn(5, 4))
  T.eq(table.concat(y.shape, ","), "5,2")
  F.sum(y):backward()
  T.ok(net.fc1.weight.grad ~= nil)
  net:zero_grad()
  T.eq(net.fc1.weight.grad, nil)
end)

T.case("Embedding, LayerNorm, RMSNorm modules", function()
  local e = nn.Embedding(10, 4, {std = 0.02})
  T.eq(table.concat(e(sr.tensor({{1, 2}}, {dtype = "int32"})).shape, ","), "1,2,4")
  local ln = nn.LayerNorm(4)
  T.close(F.mean(ln(sr.randn(3, 4)), 2), {0, 0, 0}, 1e-6)
  local rn = nn.RMSNorm(4, {weight = false})
  T.eq(#rn:parameters(), 0)
end)

T.case("state save and load round-trip", function()
  sr.manual_seed(3)
  local a = nn.Linear(5, 3)
  local path = tmp .. "/weights.srw"
  assert(a:save(path))
  sr.manual_seed(4)
  local b = nn.Linear(5, 3)
  T.ok(T.rel_err(a.weight, b.weight) > 0.1)
  b:load(path)
  T.eq(T.rel_err(a.weight, b.weight), 0); T.eq(T.rel_err(a.bias, b.bias), 0)
  local c = nn.Linear(5, 4)
  T.raises(function() c:load(path) end, "shape")
  local f = io.open(tmp .. "/bad.srw", "wb"); f:write("nope"); f:close()
  local ok, err = nn.load(tmp .. "/bad.srw")
  T.eq(ok, nil); T.ok(err:find("bad magic", 1, true))
end)

-- AdamW against the formula (PyTorch's torch.optim.AdamW): p *= 1 - lr*wd; m = b1 m + (1-b1) g;
-- v = b2 v + (1-b2) g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
T.case("AdamW step matches the formula over three steps", function()
  local p0 = {0.5, -1.0, 2.0}
  local grads = {{0.1, -0.2, 0.3}, {0.05, 0.4, -0.1}, {-0.3, 0.1, 0.2}}
  local lr, b1, b2, eps, wd = 0.01, 0.9, 0.95, 1e-8, 0.1
  local p = sr.tensor(p0, {dtype = "float64", requires_grad = true})
  local opt = optim.AdamW({p}, {lr = lr, betas = {b1, b2}, eps = eps, weight_decay = wd})
  local ref, m, v = {table.unpack(p0)}, {0, 0, 0}, {0, 0, 0}
  for t = 1, 3 do
    p.grad = sr.tensor(grads[t], {dtype = "float64"})
    opt:step()
    for i = 1, 3 do
      local g = grads[t][i]
      ref[i] = ref[i] * (1 - lr * wd)
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      ref[i] = ref[i] - lr * (m[i] / (1 - b1 ^ t)) / (math.sqrt(v[i] / (1 - b2 ^ t)) + eps)
    end
    T.close(p, ref, 1e-7, "step " .. t)  -- m and v are float32 state
  end
end)

-- the multi-tensor step (one adamw_multi_ call per group) against adamw_ per tensor: the same
-- bits after three steps, over mixed sizes (1 element, odd, chunk edges), f32 and bf16 params
local H = require "speedrun.harness_core"
local SIZES = {{1}, {7}, {3, 5}, {1003}, {64, 64}, {70001}}

local function params_of(dtype, seed)
  sr.manual_seed(seed)
  local ps = {}
  for i, shape in ipairs(SIZES) do ps[i] = sr.randn(shape):to("cpu", dtype) end
  return ps
end

for _, dt in ipairs {"float32", "bfloat16"} do
  T.case("AdamW multi-tensor step equals adamw_ per tensor (" .. dt .. ")", function()
    local ps, ref = params_of(dt, 5), params_of(dt, 5)
    for _, p in ipairs(ps) do p.requires_grad = true end
    local opts = {lr = 3e-3, betas = {0.9, 0.95}, eps = 1e-8, weight_decay = 0.1}
    local opt = optim.AdamW(ps, opts)
    local ms, vs = {}, {}
    for i, p in ipairs(ref) do
      ms[i], vs[i] = sr.zeros(p.shape), sr.zeros(p.shape)
    end
    for step = 1, 3 do
      sr.manual_seed(100 + step)
      for i, p in ipairs(ps) do p.grad = sr.randn(p.shape):to("cpu", dt) end
      local tr = H.trace_start()
      opt:step()
      H.trace_stop()
      if step > 1 then T.eq(tr:count(), 1, "one kernel call for the group") end  -- step 1 also makes m, v
      for i, p in ipairs(ref) do
        F.adamw_(p, ps[i].grad, ms[i], vs[i], {lr = opts.lr, beta1 = 0.9, beta2 = 0.95, eps = 1e-8,
                                                weight_decay = 0.1, step = step})
      end
    end
    for i, p in ipairs(ps) do
      T.eq(T.rel_err(p, ref[i]), 0, "param " .. i)
      T.eq(T.rel_err(opt.state[p].m, ms[i]), 0, "m " .. i)
      T.eq(T.rel_err(opt.state[p].v, vs[i]), 0, "v " .. i)
    end
  end)
end

-- record 10: the whole model in bf16, its Adam state too (torch's zeros_like state). state_dtype =
-- "param" gives bf16 m and v for bf16 params and f32 for f32 ones; the group of 1-element scalars
-- (lambdas, skip weights) is one kernel call; each step equals F.adamw_ on bf16 state, and a step
-- computed in float64 from the stored bf16 values, rounded once, within one bf16 rounding
T.case("AdamW state_dtype = 'param': bf16 params keep bf16 m and v; scalars in one call", function()
  sr.manual_seed(11)
  local ps, ref = {}, {}
  for i = 1, 40 do
    local shape = i == 40 and {6} or {i % 2 + 1}   -- 39 lambdas of 1 or 2 elements, 6 skip weights
    ps[i] = sr.randn(shape):to("cpu", "bfloat16"):requires_grad_()
    ref[i] = ps[i]:detach():clone()
  end
  local head = sr.randn({3, 4}):requires_grad_()   -- an f32 parameter in a "param" group: f32 state
  local opt = optim.AdamW({{params = ps, lr = 0.04}, {params = {head}, lr = 0.008}},
                          {betas = {0.9, 0.95}, eps = 1e-10, weight_decay = 0, state_dtype = "param"})
  local ms, vs = {}, {}
  for i, p in ipairs(ref) do ms[i], vs[i] = sr.zeros(p.shape, {dtype = "bfloat16"}), sr.zeros(p.shape, {dtype = "bfloat16"}) end
  for step = 1, 3 do
    for _, p in ipairs(ps) do p.grad = F.mul(sr.randn(p.shape), 1e-2):to("cpu", "bfloat16") end
    head.grad = sr.randn(head.shape)
    local tr = H.trace_start()
    opt:step()
    H.trace_stop()
    if step > 1 then T.eq(tr:count(), 2, "one kernel call per group") end
    for i, p in ipairs(ref) do
      local p0, m0, v0 = p:double(), ms[i]:double(), vs[i]:double()
      F.adamw_(p, ps[i].grad, ms[i], vs[i], {lr = 0.04, beta1 = 0.9, beta2 = 0.95, eps = 1e-10, weight_decay = 0, step = step})
      -- float64 from the stored values; the parameter moved by the unrounded m and v
      local g = ps[i].grad:double()
      local m = F.add(F.mul(m0, 0.9), F.mul(g, 0.1))
      local v = F.add(F.mul(v0, 0.95), F.mul(F.square(g), 0.05))
      local upd = F.div(F.div(m, 1 - 0.9 ^ step), F.add(F.sqrt(F.div(v, 1 - 0.95 ^ step)), 1e-10))
      T.close(p, F.sub(p0, F.mul(upd, 0.04)), 8e-3, "param " .. i .. " step " .. step)
      T.close(ms[i], m, 8e-3, "m " .. i)
    end
  end
  for i, p in ipairs(ps) do
    T.eq(opt.state[p].m.dtype, "bfloat16"); T.eq(opt.state[p].v.dtype, "bfloat16")
    T.eq(T.rel_err(p, ref[i]), 0, "param " .. i .. " equals adamw_ with bf16 state")
    T.eq(T.rel_err(opt.state[p].m, ms[i]), 0, "m " .. i)
    T.eq(T.rel_err(opt.state[p].v, vs[i]), 0, "v " .. i)
  end
  T.eq(opt.state[head].m.dtype, "float32")
  local o2 = optim.AdamW({sr.zeros(2):requires_grad_()}, {state_dtype = "bfloat16"})
  o2.groups[1].params[1].grad = sr.ones(2)
  o2:step()
  T.eq(o2.state[o2.groups[1].params[1]].v.dtype, "bfloat16", "state_dtype = 'bfloat16' for an f32 param")
end)

T.case("AdamW falls back to adamw_ per tensor: mixed dtypes, a parameter that missed a step", function()
  local a = sr.tensor({0.5, -1.0}, {requires_grad = true})
  local b = sr.tensor({2.0}, {dtype = "float64", requires_grad = true})
  local opt = optim.AdamW({a, b}, {lr = 0.1, weight_decay = 0})
  a.grad, b.grad = sr.tensor({1.0, 1.0}), sr.tensor({1.0}, {dtype = "float64"})
  opt:step()
  T.close(a, {0.4, -1.1}, 1e-6); T.close(b, {1.9}, 1e-6)   -- the first Adam step moves by lr
  local tr = H.trace_start(); opt:step(); H.trace_stop()
  T.eq(tr:count(), 2, "one adamw per tensor")
  -- c misses step 1, so its step count differs from d's at step 2: per tensor, each with its own
  local c = sr.tensor({1.0}, {requires_grad = true})
  local d = sr.tensor({1.0}, {requires_grad = true})
  local o2 = optim.AdamW({c, d}, {lr = 0.1, weight_decay = 0})
  d.grad = sr.tensor({1.0}); o2:step()
  c.grad, d.grad = sr.tensor({1.0}), sr.tensor({1.0})
  tr = H.trace_start(); o2:step(); H.trace_stop()
  T.eq(tr:count(), 4, "c's m and v, then adamw per tensor")
  T.eq(o2.state[c].step, 1); T.eq(o2.state[d].step, 2)
  T.close(c, {0.9}, 1e-6, "c's first step moves by lr"); T.close(d, {0.8}, 1e-6)
end)

T.case("adamw_multi_ launch traces leave out lr and step when sched supplies them", function()
  local function run(lr, sched)
    local p, g = sr.ones(5), sr.ones(5)
    local tr = H.trace_start()
    F.adamw_multi_({p}, {g}, {sr.zeros(5)}, {sr.zeros(5)}, {lr = lr, step = 1, sched = sched})
    H.trace_stop()
    return tr
  end
  local s = sr.tensor({0.1, 1})
  T.eq(run(0.1, s):diff(run(0.2, s)), nil)
  T.ok(tostring(run(0.1):diff(run(0.2))):find("f0 is 0.1, then 0.2", 1, true))
  T.raises(function() F.adamw_multi_({sr.ones(2)}, {sr.ones(3)}, {sr.zeros(2)}, {sr.zeros(2)}, {lr = 0.1, step = 1}) end,
           "does not match")
  T.raises(function() F.adamw_multi_({sr.ones(2)}, {}, {}, {}, {lr = 0.1, step = 1}) end, "same length")
end)

T.case("AdamW parameter groups and lr multipliers", function()
  local a = sr.tensor({1.0}, {requires_grad = true})
  local b = sr.tensor({1.0}, {requires_grad = true})
  local opt = optim.AdamW({{params = {a}, lr = 0.1, weight_decay = 0}, {params = {b}, lr = 0.01, weight_decay = 0}})
  a.grad = sr.tensor({1.0}); b.grad = sr.tensor({1.0})
  opt:step()
  T.close(a, {0.9}, 1e-6); T.close(b, {0.99}, 1e-6)   -- first Adam step moves by lr
  opt:set_lr_multiplier(0.5)
  T.close(opt.groups[1].lr, {0.05}); T.close(opt.groups[2].lr, {0.005})
  opt:zero_grad()
  T.eq(a.grad, nil)
end)

T.case("clip_grad_norm_", function()
  local a = sr.tensor({1.0, 1.0}, {requires_grad = true})
  local b = sr.tensor({1.0}, {requires_grad = true})
  a.grad = sr.tensor({3.0, 0.0}); b.grad = sr.tensor({4.0})
  local tr = H.trace_start()
  local n = optim.clip_grad_norm_({a, b}, 1.0)
  H.trace_stop()
  T.eq(tr:count(), 3, "sumsq_multi, clip_multi, sqrt")
  T.eq(n.numel and n:numel() or #n.shape, 1)
  T.close(n, {5.0})
  T.close(a.grad, {0.6, 0}, 1e-5); T.close(b.grad, {0.8}, 1e-5)
  local n2 = optim.clip_grad_norm_({a, b}, 10.0)
  T.close(n2, {1.0}, 1e-5); T.close(b.grad, {0.8}, 1e-5, "no change under the limit")
  T.eq(optim.clip_grad_norm_({sr.tensor({1.0})}, 1.0), nil, "no gradients")
end)

T.case("clip_grad_norm_ against a hand computation: mixed sizes and dtypes", function()
  sr.manual_seed(9)
  local ps, total = {}, 0
  for i, shape in ipairs(SIZES) do
    local dt = ({"float32", "bfloat16", "float64"})[i % 3 + 1]
    ps[i] = sr.zeros(shape, {dtype = dt, requires_grad = true})
    ps[i].grad = sr.randn(shape):to("cpu", dt)
    for _, x in ipairs(ps[i].grad:to("cpu", "float64"):view(-1):tolist()) do total = total + x * x end
  end
  local before = {}
  for i, p in ipairs(ps) do before[i] = p.grad:to("cpu", "float64"):clone() end
  local norm = optim.clip_grad_norm_(ps, 2.0)
  T.close(norm, {math.sqrt(total)}, 1e-6)
  local scale = 2.0 / (math.sqrt(total) + 1e-6)
  for i, p in ipairs(ps) do
    local tol = p.dtype == "bfloat16" and 1e-2 or 1e-6
    T.ok(T.rel_err(p.grad, F.mul(before[i], scale)) < tol, "grad " .. i .. " scaled")
  end
  -- a NaN gradient makes every gradient NaN, as torch's clip_grad_norm_
  local q = sr.tensor({1.0}, {requires_grad = true}); q.grad = sr.tensor({0 / 0})
  local r = sr.tensor({1.0}, {requires_grad = true}); r.grad = sr.tensor({1.0})
  optim.clip_grad_norm_({q, r}, 1.0)
  local v = r.grad:item()
  T.ok(v ~= v, "NaN spreads")
end)

T.case("learning-rate schedules", function()
  local s = optim.schedule
  local w = s.warmup(4)
  T.close({w(0), w(3), w(10)}, {0.25, 1, 1})
  local c = s.cosine(10, 0, 0.1)
  T.close({c(0), c(5), c(10)}, {1, 0.55, 0.1}, 1e-12)
  local l = s.linear(10, 2)
  T.close({l(0), l(2), l(6), l(10)}, {0.5, 1, 0.5, 0})
  local t = s.trapezoid(100, 10, 20)
  T.close({t(0), t(9), t(50), t(80), t(90), t(100)}, {0.1, 1, 1, 1, 0.5, 0})
  T.eq(s.constant()(5), 1.0)
end)

T.done()
