-- Every differentiable op against central finite differences in float64, at several shapes,
-- with non-contiguous (transposed, narrowed) and broadcast inputs.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F
local gradcheck = sr.autograd.gradcheck

sr.manual_seed(7)

local function rnd(...)
  return sr.randn({...}, {dtype = "float64", requires_grad = true})
end
local function pos(...)  -- strictly positive inputs for log/sqrt/pow/div
  local shape = {...}
  local t = sr.no_grad(function() return F.add(F.abs(sr.randn(shape, {dtype = "float64"})), 0.5) end)
  t.requires_grad = true
  return t
end
-- a non-contiguous input of the given shape: a transposed view of a fresh tensor
local function strided(r, c)
  local base = sr.randn(c, r, {dtype = "float64"})
  local t = base:transpose()
  t.requires_grad = true
  T.ok(not t:is_contiguous())
  return t
end

local function check(name, fn, inputs, opts)
  local ok, msg = gradcheck(fn, inputs, opts)
  T.ok(ok, name .. ": " .. tostring(msg))
end

T.case("unary element-wise", function()
  for _, shape in ipairs {{5}, {3, 4}, {2, 3, 5}} do
    for _, name in ipairs {"neg", "exp", "tanh", "sigmoid", "square", "gelu"} do
      check(name, F[name], {rnd(table.unpack(shape))})
    end
    check("log", F.log, {pos(table.unpack(shape))})
    check("sqrt", F.sqrt, {pos(table.unpack(shape))})
    check("rsqrt", F.rsqrt, {pos(table.unpack(shape))})
    check("gelu tanh", function(x) return F.gelu(x, "tanh") end, {rnd(table.unpack(shape))})
    -- relu, relu2, abs: away from the kink at 0
    check("relu", F.relu, {pos(table.unpack(shape))})
    check("relu2", F.relu2, {F.neg(pos(table.unpack(shape))):detach():requires_grad_()})
    check("abs", F.abs, {F.neg(pos(table.unpack(shape))):detach():requires_grad_()})
  end
  check("pow scalar", function(x) return F.pow(x, 3) end, {rnd(4)})
  check("scalars", function(x) return 3 - (2 / x + x * 4) end, {pos(4)})
  check("non-contiguous", F.tanh, {strided(3, 4)})
  check("relu2 both sides", F.relu2, {sr.tensor({-1.5, -0.5, 0.5, 2.0}, {dtype = "float64", requires_grad = true})})
end)

-- learned scalars (records 9-11: x <- l1*x + l2*x0 with lambdas = [l1, l2], skip weights,
-- (1 - lamb)*v + lamb*v1): a 0-d slice times a tensor; its gradient is the full sum of dy*x
T.case("learned scalar times tensor", function()
  check("select(1, i) * x", function(l, x, x0) return F.add(F.mul(l:select(1, 1), x), F.mul(l:select(1, 2), x0)) end,
        {rnd(2), rnd(2, 3, 4), rnd(2, 3, 4)})
  check("(1 - l) * v + l * v1", function(l, v, v1) return F.add(F.mul(F.sub(1, l), v), F.mul(l, v1)) end,
        {sr.tensor(0.5, {dtype = "float64", requires_grad = true}), rnd(3, 4), rnd(3, 4)})
  -- a 0-d scalar keeps a bf16 activation bf16 (torch's result_type), its gradient in its own dtype
  local l = sr.tensor({1.0, 0.5}, {requires_grad = true})
  local x = sr.randn({4, 8}):bf16()
  local y = F.mul(l:select(1, 2), x)
  T.eq(y.dtype, "bfloat16", "f32 0-d * bf16 [4, 8]")
  F.sum(y):backward()
  T.eq(l.grad.dtype, "float32")
  T.close(l.grad, {0, F.sum(x:float()):item()}, 2e-2)
  T.eq(F.mul(sr.randn({3}), sr.tensor(2, {dtype = "bfloat16"})).dtype, "float32", "f32 [3] * bf16 0-d")
  T.eq(F.mul(sr.randn({3}):bf16(), sr.randn({1})).dtype, "float32", "bf16 [3] * f32 [1]: both have dims")
end)

T.case("binary with broadcasting", function()
  for _, op in ipairs {"add", "sub", "mul", "maximum", "minimum"} do
    check(op, F[op], {rnd(3, 4), rnd(3, 4)})
    check(op .. " broadcast", F[op], {rnd(3, 1), rnd(1, 4)})
    check(op .. " broadcast rank", F[op], {rnd(2, 3, 4), rnd(4)})
    check(op .. " strided", F[op], {strided(3, 4), rnd(4)})
  end
  check("div", F.div, {rnd(3, 4), pos(3, 4)})
  check("div broadcast", F.div, {rnd(3, 4), pos(4)})
  check("pow", F.pow, {pos(3, 4), rnd(3, 4)})
  check("where", function(a, b) return F.where(sr.tensor({1, 0, 1, 0}, {dtype = "float64"}), a, b) end, {rnd(3, 4), rnd(4)})
  check("lerp", function(a, b, w) return F.lerp(a, b, w) end, {rnd(3, 4), rnd(3, 4), rnd(4)})
  check("masked_fill", function(a) return F.masked_fill(a, sr.tensor({0, 1, 0}, {dtype = "float64"}), 0.5) end, {rnd(2, 3)})
end)

T.case("reductions", function()
  for _, shape in ipairs {{6}, {3, 4}, {2, 3, 4}} do
    local nd = #shape
    for d = 1, nd do
      check("sum dim " .. d, function(x) return F.sum(x, d) end, {rnd(table.unpack(shape))})
      check("mean dim " .. d, function(x) return F.mean(x, d, true) end, {rnd(table.unpack(shape))})
      check("max dim " .. d, function(x) return (F.max(x, d)) end, {rnd(table.unpack(shape))})
      check("var dim " .. d, function(x) return F.var(x, d) end, {rnd(table.unpack(shape))})
      check("norm dim " .. d, function(x) return F.norm(x, d) end, {rnd(table.unpack(shape))})
    end
    check("sum all", F.sum, {rnd(table.unpack(shape))})
    check("norm all", F.norm, {rnd(table.unpack(shape))})
  end
  check("sum strided", function(x) return F.sum(x, 1) end, {strided(3, 5)})
  check("max of everything", F.max, {rnd(3, 4)})
end)

T.case("clamp and outer", function()
  check("clamp", function(x) return F.clamp(x, -0.5, 0.7) end, {rnd(4, 5)})
  check("outer", function(a, b) return F.outer(a, b) end, {rnd(4), rnd(3)})
end)

T.case("cumsum", function()
  check("cumsum last dim", function(x) return F.cumsum(x, 2) end, {rnd(3, 7)})
  check("cumsum first dim", function(x) return F.cumsum(x, 1) end, {rnd(5, 4)})
  check("cumsum strided", function(x) return F.cumsum(x, -1) end, {strided(4, 6)})
  check("cumsum 3-d middle", function(x) return F.cumsum(x * x, 2) end, {rnd(2, 5, 3)})
end)

T.case("matmul and linear", function()
  check("matmul 2-D", F.matmul, {rnd(3, 4), rnd(4, 5)})
  check("matmul transposed operands", F.matmul, {strided(3, 4), strided(4, 2)})
  check("matmul batched", F.matmul, {rnd(2, 3, 4), rnd(2, 4, 5)})
  check("matmul broadcast batch", F.matmul, {rnd(2, 1, 3, 4), rnd(3, 4, 2)})
  check("matmul batch @ 2-D", F.matmul, {rnd(2, 3, 4), rnd(4, 5)})
  check("matmul vector", F.matmul, {rnd(3, 4), rnd(4)})
  check("linear", F.linear, {rnd(2, 3, 4), rnd(5, 4), rnd(5)})
  check("linear no bias, strided", F.linear, {strided(3, 4), rnd(2, 4)})
end)

T.case("embedding", function()
  local idx = sr.tensor({{1, 3, 1}, {0, 2, 3}}, {dtype = "int32"})
  check("embedding (repeated rows accumulate)", function(w) return F.embedding(idx, w) end, {rnd(4, 5)})
end)

T.case("norms", function()
  for _, shape in ipairs {{2, 8}, {3, 2, 5}} do
    check("rms_norm", function(x) return F.rms_norm(x, nil, 1e-6) end, {rnd(table.unpack(shape))})
    check("rms_norm weight", function(x, w) return F.rms_norm(x, w, 1e-6) end, {rnd(table.unpack(shape)), rnd(shape[#shape])})
    check("layer_norm", function(x, w, b) return F.layer_norm(x, w, b) end,
          {rnd(table.unpack(shape)), rnd(shape[#shape]), rnd(shape[#shape])})
    check("layer_norm no affine", function(x) return F.layer_norm(x) end, {rnd(table.unpack(shape))})
  end
  check("rms_norm strided", function(x) return F.rms_norm(x) end, {strided(3, 6)})
end)

T.case("softmax, log_softmax, cross_entropy", function()
  for _, d in ipairs {1, 2, -1} do
    check("softmax dim " .. d, function(x) return F.softmax(x, d) end, {rnd(3, 5)})
    check("log_softmax dim " .. d, function(x) return F.log_softmax(x, d) end, {rnd(3, 5)})
  end
  check("softmax 3-D middle dim", function(x) return F.softmax(x, 2) end, {rnd(2, 3, 4)})
  local t = sr.tensor({{1, 4, 0}, {2, 2, 3}}, {dtype = "int32"})
  check("cross_entropy mean", function(x) return F.cross_entropy(x, t) end, {rnd(2, 3, 5)})
  check("cross_entropy sum", function(x) return F.cross_entropy(x, t, {reduction = "sum"}) end, {rnd(2, 3, 5)})
  check("cross_entropy none", function(x) return F.cross_entropy(x, t, {reduction = "none"}) end, {rnd(2, 3, 5)})
  local ti = sr.tensor({{1, -1, 0}, {2, -1, 3}}, {dtype = "int32"})
  check("cross_entropy ignore_index", function(x) return F.cross_entropy(x, ti, {ignore_index = -1}) end, {rnd(2, 3, 5)})
  -- inplace: the gradient is made in the forward over the (intermediate) logits, scaled in the backward
  check("cross_entropy inplace mean", function(x) return F.cross_entropy(x * 1, ti, {ignore_index = -1, inplace = true}) end, {rnd(2, 3, 5)})
  check("cross_entropy inplace sum", function(x) return F.cross_entropy(x * 1, t, {reduction = "sum", inplace = true}) end, {rnd(2, 3, 5)})
end)

T.case("scaled dot-product attention", function()
  for _, D in ipairs {4, 8} do
    for _, causal in ipairs {true, false} do
      check(("sdpa D=%d causal=%s"):format(D, causal), function(q, k, v)
        return F.scaled_dot_product_attention(q, k, v, {causal = causal})
      end, {rnd(1, 2, 5, D), rnd(1, 2, 5, D), rnd(1, 2, 5, D)})
    end
  end
  check("sdpa explicit scale, transposed q", function(q, k, v)
    return F.scaled_dot_product_attention(q:transpose(2, 3), k, v, {scale = 0.3})
  end, {rnd(2, 4, 2, 3), rnd(2, 2, 4, 3), rnd(2, 2, 4, 3)})
end)

T.case("rotary embedding", function()
  local cos, sin = sr.randn(1, 5, 1, 3, {dtype = "float64"}), sr.randn(1, 5, 1, 3, {dtype = "float64"})
  check("rotary", function(x) return F.rotary(x, cos, sin) end, {rnd(2, 5, 2, 6)})
  check("rotary of a transposed view", function(x) return F.rotary(x:transpose(2, 3), cos, sin) end, {rnd(2, 2, 5, 6)})
end)

T.case("views and joins", function()
  check("view", function(x) return x:view(4, 3):square() end, {rnd(3, 4)})
  check("reshape of strided", function(x) return x:reshape(12):square() end, {strided(3, 4)})
  check("transpose", function(x) return x:transpose(1, 2):contiguous():square() end, {rnd(3, 4)})
  check("permute", function(x) return F.mul(x:permute(3, 1, 2), sr.arange(0, 24, {dtype = "float64"}):view(4, 2, 3)) end, {rnd(2, 3, 4)})
  check("narrow", function(x) return x:narrow(2, 2, 2):square() end, {rnd(3, 4)})
  check("unsqueeze/squeeze", function(x) return x:unsqueeze(2):squeeze(2):square() end, {rnd(3, 4)})
  check("expand", function(x) return F.mul(x:expand(3, 4), sr.arange(0, 12, {dtype = "float64"}):view(3, 4)) end, {rnd(1, 4)})
  check("cat", function(a, b) return F.cat({a, b}, 2):square() end, {rnd(2, 3), rnd(2, 2)})
  check("stack", function(a, b) return F.stack({a, b}):square() end, {rnd(2, 3), rnd(2, 3)})
  check("split", function(x) local p = F.split(x, 2, 2); return F.mul(p[1], p[2]) end, {rnd(3, 4)})
  check("cast round trip", function(x) return F.cast(F.cast(x, "float32"), "float64"):square() end, {rnd(3)}, {eps = 1e-3, atol = 1e-4, rtol = 1e-3})
end)

T.done()
