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
  local n = optim.clip_grad_norm_({a, b}, 1.0)
  T.close(n, {5.0})
  T.close(a.grad, {0.6, 0}, 1e-5); T.close(b.grad, {0.8}, 1e-5)
  local n2 = optim.clip_grad_norm_({a, b}, 10.0)
  T.close(n2, {1.0}, 1e-5); T.close(b.grad, {0.8}, 1e-5, "no change under the limit")
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
