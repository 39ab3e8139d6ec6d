-- Every op's forward against hand-computed values (CPU reference).
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local x = sr.tensor({-1.0, 0.0, 0.5, 2.0})

T.case("element-wise", function()
  T.close(F.neg(x), {1, 0, -0.5, -2})
  T.close(F.exp(x), {math.exp(-1), 1, math.exp(0.5), math.exp(2)}, 1e-6)
  T.close(F.log(sr.tensor({1, math.exp(1), 0.25})), {0, 1, math.log(0.25)}, 1e-6)
  T.close(F.tanh(x), {math.tanh(-1), 0, math.tanh(0.5), math.tanh(2)}, 1e-6)
  T.close(F.sigmoid(x), {1 / (1 + math.exp(1)), 0.5, 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-2))}, 1e-6)
  T.close(F.relu(x), {0, 0, 0.5, 2})
  T.close(F.square(x), {1, 0, 0.25, 4})
  T.close(F.relu2(x), {0, 0, 0.25, 4})
  T.close(F.abs(x), {1, 0, 0.5, 2})
  T.close(F.sqrt(sr.tensor({4, 9})), {2, 3})
  T.close(F.rsqrt(sr.tensor({4, 16})), {0.5, 0.25})
  T.close(F.pow(sr.tensor({2, 3}), 3), {8, 27})
  T.close(F.pow(sr.tensor({2, 3}), sr.tensor({2, 0.5})), {4, math.sqrt(3)}, 1e-6)
  -- GELU: exact 0.5 x (1 + erf(x / sqrt 2)); values from the definition (erf(1/sqrt2) = 0.682689492)
  T.close(F.gelu(sr.tensor({1.0, -1.0, 0.0})), {0.841344746, -0.158655254, 0}, 1e-6)
  -- tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  local function gt(v) return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ^ 3))) end
  T.close(F.gelu(sr.tensor({1.0, -2.0}), "tanh"), {gt(1), gt(-2)}, 1e-6)
end)

T.case("lerp_ and select (Muon's momentum EMA, learned scalars)", function()
  local buf = sr.tensor({1.0, 2.0, -4.0})
  T.ok(buf:lerp_(sr.tensor({3.0, 2.0, 0.0}), 0.25) == buf, "returns self")
  T.close(buf, {1.5, 2.0, -3.0}, 1e-7)
  local b16 = sr.tensor({1.0, -1.0}, {dtype = "bfloat16"})
  b16:lerp_(sr.tensor({0.0, 1.0}), 0.5)   -- an f32 end into a bf16 buffer
  T.close(b16, {0.5, 0.0})
  T.raises(function() buf:lerp_(buf, sr.tensor(0.5)) end, "weight must be a number")
  local l = sr.tensor({{1, 2}, {3, 4}})
  T.eq(#l:select(1, 2).shape, 1); T.close(l:select(1, 2), {3, 4}); T.close(l:select(2, 1), {1, 3})
  T.eq(#sr.tensor({5, 6}):select(1, 2).shape, 0, "select of a 1-D tensor is 0-d")
end)

T.case("binary with broadcasting and scalars", function()
  local a = sr.tensor({{1, 2, 3}, {4, 5, 6}})
  local b = sr.tensor({10, 20, 30})
  T.close(a + b, {11, 22, 33, 14, 25, 36})
  T.close(a - b, {-9, -18, -27, -6, -15, -24})
  T.close(a * sr.tensor({{2}, {3}}), {2, 4, 6, 12, 15, 18})
  T.close(b / a, {10, 10, 10, 2.5, 4, 5})
  T.close(a + 1, {2, 3, 4, 5, 6, 7}); T.close(1 - a, {0, -1, -2, -3, -4, -5})
  T.close(2 * a, {2, 4, 6, 8, 10, 12}); T.close(6 / a, {6, 3, 2, 1.5, 1.2, 1})
  T.close(-a, {-1, -2, -3, -4, -5, -6}); T.close(a ^ 2, {1, 4, 9, 16, 25, 36})
  T.close(F.maximum(a, sr.tensor(3.5)), {3.5, 3.5, 3.5, 4, 5, 6})
  T.close(F.minimum(a, 2), {1, 2, 2, 2, 2, 2})
  T.close(F.eq(a, 2), {0, 1, 0, 0, 0, 0}); T.close(F.gt(a, 4), {0, 0, 0, 0, 1, 1})
  T.close(F.lerp(sr.tensor({0, 10}), sr.tensor({10, 20}), 0.25), {2.5, 12.5})
  T.close(F.lerp(sr.tensor({0, 10}), sr.tensor({10, 20}), sr.tensor({0.5, 1})), {5, 20})
  T.eq(table.concat((sr.zeros(2, 1, 3) + sr.zeros(4, 1)).shape, ","), "2,4,3")
end)

T.case("where and masked_fill", function()
  local c = sr.tensor({1, 0, 1})
  T.close(F.where(c, sr.tensor({1, 2, 3}), sr.tensor({-1, -2, -3})), {1, -2, 3})
  T.close(F.where(c, 0, sr.tensor({5, 6, 7})), {0, 6, 0})
  T.close(F.masked_fill(sr.tensor({{1, 2}, {3, 4}}), sr.tensor({0, 1}), -math.huge), {1, -math.huge, 3, -math.huge})
  -- int32 stays int32 with an integer value (token ids: the profiler's document separators)
  local ids = sr.tensor({5, 6, 7}, {dtype = "int32"})
  local m = F.masked_fill(ids, sr.tensor({0, 1, 0}), 50256)
  T.eq(m.dtype, "int32"); T.close(m, {5, 50256, 7})
  T.eq(F.where(sr.tensor({1, 0, 1}), ids, 0).dtype, "int32")
end)

T.case("linspace, outer, clamp (torch.linspace, torch.outer, torch.clamp)", function()
  T.close(sr.linspace(0, 1, 5), {0, 0.25, 0.5, 0.75, 1}); T.eq(sr.linspace(0, 1, 5).dtype, "float32")
  T.close(sr.linspace(2, -1, 4), {2, 1, 0, -1}); T.eq(sr.linspace(3, 9, 1):tolist()[1], 3.0)
  T.eq(sr.linspace(0, 1, 0):numel(), 0); T.eq(sr.linspace(0, 1, 3, {dtype = "float64"}).dtype, "float64")
  T.close(sr.linspace(3, 3, 4), {3, 3, 3, 3})        -- start == stop: steps copies
  local f = sr.linspace(0, 1, 32)                      -- record 17's frequencies: (1/1024)^linspace
  T.eq(f:numel(), 32); T.eq(f:tolist()[32], 1.0)
  T.close(F.outer(sr.tensor({1, 2}), sr.tensor({3, 4, 5})), {3, 4, 5, 6, 8, 10})
  local x = sr.tensor({-2, -0.5, 0.5, 2})
  T.close(F.clamp(x, -1, 1), {-1, -0.5, 0.5, 1}); T.close(F.clamp(x, 0), {0, 0, 0.5, 2})
  T.close(F.clamp(x, nil, 0), {-2, -0.5, 0, 0}); T.close(x:clamp(-1, 1), {-1, -0.5, 0.5, 1})
  T.raises(function() return F.clamp(x) end, "bad argument #2 to 'clamp' (at least one of min and max")
  T.raises(function() return F.outer(sr.zeros(2, 2), x) end, "bad argument #1 to 'outer'")
  T.raises(function() return sr.linspace(0, 1, 2.5) end, "bad argument #3 to 'linspace'")
end)

T.case("cumsum and argsort", function()
  local a = sr.tensor({{1, 5, 3}, {4, 2, 6}})
  T.close(F.cumsum(a, 2), {1, 6, 9, 4, 6, 12}); T.close(F.cumsum(a, 1), {1, 5, 3, 5, 7, 9})
  T.close(F.cumsum(a, -1), {1, 6, 9, 4, 6, 12})
  local flags = sr.tensor({0, 1, 0, 0, 1, 1}, {dtype = "int32"})   -- the records' document ids
  local ids = F.cumsum(flags, 1)
  T.eq(ids.dtype, "int32"); T.close(ids, {0, 1, 1, 1, 2, 3})
  T.close(F.cumsum(F.cast(a, "bfloat16"), 2), {1, 6, 9, 4, 6, 12})
  -- stable: equal keys in index order, ascending and descending; -0.0 equals 0.0
  local x = sr.tensor({3, 1, 2, 1, -0.0, 0.0, 5})
  T.close(F.argsort(x), {4, 5, 1, 3, 2, 0, 6}); T.eq(F.argsort(x).dtype, "int32")
  T.close(F.argsort(x, 1, {descending = true}), {6, 0, 2, 1, 3, 4, 5})
  T.close(F.argsort(a, 1), {0, 1, 0, 1, 0, 1}); T.close(F.argsort(a, 2, {descending = true}), {1, 2, 0, 2, 0, 1})
  -- negatives through each float key (their bits flipped), bf16 and f64 as f32
  for _, dt in ipairs {"bfloat16", "float32", "float64"} do
    local n = F.cast(sr.tensor({3, -1, 2, -2.5, -0.0, 0.0, -1}), dt)
    T.close(F.argsort(n), {3, 1, 6, 4, 5, 2, 0}, 0, dt)
    T.close(F.argsort(n, 1, {descending = true}), {0, 2, 4, 5, 1, 6, 3}, 0, dt)
  end
  -- record 15's lists: a 0/1 mask row, listed blocks first in ascending order, then the rest
  local dense = sr.tensor({{1, 0, 1, 1}, {0, 0, 0, 1}}, {dtype = "int32"})
  T.close(F.argsort(dense, 2, {descending = true}), {0, 2, 3, 1, 3, 0, 1, 2})
  T.close(x:argsort(), {4, 5, 1, 3, 2, 0, 6}); T.close(flags:cumsum(1), {0, 1, 1, 1, 2, 3})
end)

T.case("reductions", function()
  local a = sr.tensor({{1, 5, 3}, {4, 2, 6}})
  T.close(F.sum(a), {21}); T.close(F.sum(a, 1), {5, 7, 9}); T.close(F.sum(a, 2), {9, 12})
  T.eq(table.concat(F.sum(a, 2, true).shape, ","), "2,1")
  T.close(F.mean(a, -1), {3, 4}); T.close(F.mean(a), {3.5})
  local v, i = F.max(a, 2)
  T.close(v, {5, 6}); T.close(i, {1, 2}); T.eq(i.dtype, "int32")
  T.close(F.argmax(a, 1), {1, 0, 1})
  T.close(F.max(a), {6})
  T.close(F.var(a, 2), {4, 4}); T.close(F.var(a, 2, {correction = 0}), {8 / 3, 8 / 3}, 1e-6)
  T.close(F.var(a), {3.5}, 1e-6)
  T.close(F.std(sr.tensor({2, 4, 4, 4, 5, 5, 7, 9}), nil, {correction = 0}), {2})
  T.close(F.norm(sr.tensor({{3, 4}, {0, 0}})), {5}); T.close(F.norm(sr.tensor({{3, 4}, {6, 8}}), 2), {5, 10})
end)

T.case("matmul: 2-D, batched, broadcast, transposed, vectors", function()
  local a = sr.tensor({{1, 2}, {3, 4}, {5, 6}})          -- [3,2]
  local b = sr.tensor({{1, 0, 2}, {0, 1, 3}})            -- [2,3]
  T.close(F.matmul(a, b), {1, 2, 8, 3, 4, 18, 5, 6, 28})
  T.close(F.matmul(a:T(), a), {35, 44, 44, 56})          -- transposed operand
  T.close(F.matmul(a, sr.tensor({1, 1})), {3, 7, 11})      -- matrix @ vector
  T.close(F.matmul(sr.tensor({1, 1, 1}), a), {9, 12})      -- vector @ matrix
  local bat = F.stack({a, a * 2})                           -- [2,3,2]
  local r = F.matmul(bat, b)                                -- [2,3,3] with b broadcast
  T.eq(table.concat(r.shape, ","), "2,3,3")
  T.close(r:narrow(1, 2, 1), {2, 4, 16, 6, 8, 36, 10, 12, 56})
  local r2 = F.matmul(bat, F.stack({b, b}))
  T.close(r2, r)
  T.close(F.matmul(sr.ones(4, 1, 2, 3), sr.ones(5, 3, 2)):sum(), {4 * 5 * 2 * 2 * 3})
  local w = sr.tensor({{1, 0}, {0, 1}, {1, 1}})             -- linear: [out=3, in=2]
  T.close(F.linear(a, w), {1, 2, 3, 3, 4, 7, 5, 6, 11})
  T.close(F.linear(a, w, sr.tensor({1, 1, 1})), {2, 3, 4, 4, 5, 8, 6, 7, 12})
end)

T.case("embedding", function()
  local w = sr.tensor({{0, 0}, {1, 10}, {2, 20}})
  local idx = sr.tensor({{2, 0}, {1, 1}}, {dtype = "int32"})
  local e = F.embedding(idx, w)
  T.eq(table.concat(e.shape, ","), "2,2,2")
  T.close(e, {2, 20, 0, 0, 1, 10, 1, 10})
end)

T.case("norms", function()
  local a = sr.tensor({{1, 2, 3, 4}, {-2, 0, 2, 0}})
  local r1 = math.sqrt((1 + 4 + 9 + 16) / 4)
  local r2 = math.sqrt(8 / 4)
  T.close(F.rms_norm(a, nil, 0), {1 / r1, 2 / r1, 3 / r1, 4 / r1, -2 / r2, 0, 2 / r2, 0}, 1e-6)
  T.close(F.rms_norm(a, sr.tensor({1, 2, 1, 1}), 0):narrow(1, 1, 1), {1 / r1, 4 / r1, 3 / r1, 4 / r1}, 1e-6)
  local sd = math.sqrt(1.25)
  T.close(F.layer_norm(a:narrow(1, 1, 1), nil, nil, 0), {-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd}, 1e-6)
  T.close(F.layer_norm(sr.tensor({{1, 3}}), sr.tensor({2, 2}), sr.tensor({1, -1}), 0), {-1, 1}, 1e-6)
end)

T.case("softmax, log_softmax, cross_entropy", function()
  local a = sr.tensor({{1, 2, 3}, {1, 1, 1}})
  local e = {math.exp(1), math.exp(2), math.exp(3)}
  local z = e[1] + e[2] + e[3]
  T.close(F.softmax(a), {e[1] / z, e[2] / z, e[3] / z, 1 / 3, 1 / 3, 1 / 3}, 1e-6)
  T.close(F.log_softmax(a):narrow(1, 1, 1), {1 - math.log(z), 2 - math.log(z), 3 - math.log(z)}, 1e-6)
  T.close(F.softmax(a, 1):narrow(2, 1, 1), {0.5, 0.5}, 1e-6)
  local t = sr.tensor({2, 0}, {dtype = "int32"})
  local l1, l2 = math.log(z) - 3, math.log(3)
  T.close(F.cross_entropy(a, t), {(l1 + l2) / 2}, 1e-6)
  T.close(F.cross_entropy(a, t, {reduction = "none"}), {l1, l2}, 1e-6)
  T.close(F.cross_entropy(a, t, {reduction = "sum"}), {l1 + l2}, 1e-6)
  T.close(F.cross_entropy(a, sr.tensor({2, -1}, {dtype = "int32"}), {ignore_index = -1}), {l1}, 1e-6)
  -- huge logits stay finite (max subtracted)
  T.close(F.cross_entropy(sr.tensor({{1000, 0}}), sr.tensor({0}, {dtype = "int32"})), {0}, 1e-6)
end)

T.case("scaled dot-product attention", function()
  -- B=1, H=1, T=2, D=2: causal row 1 sees only itself; row 2 mixes with softmax weights
  local q = sr.tensor({{{{1, 0}, {0, 1}}}})
  local k = sr.tensor({{{{1, 0}, {1, 1}}}})
  local v = sr.tensor({{{{1, 2}, {3, 4}}}})
  local o = F.scaled_dot_product_attention(q, k, v, {causal = true, scale = 1})
  -- row 2: scores q2.k1 = 0, q2.k2 = 1 -> weights 1/(1+e), e/(1+e)
  local w2 = math.exp(1) / (1 + math.exp(1))
  T.close(o, {1, 2, 1 * (1 - w2) + 3 * w2, 2 * (1 - w2) + 4 * w2}, 1e-6)
  local nc = F.scaled_dot_product_attention(q, k, v, {causal = false, scale = 1})
  local w1 = math.exp(1) / (math.exp(1) + math.exp(1))  -- row 1: scores 1, 1
  T.close(nc:narrow(3, 1, 1), {1 * (1 - w1) + 3 * w1, 2 * (1 - w1) + 4 * w1}, 1e-6)
  -- default scale is 1/sqrt(D)
  local d1 = F.scaled_dot_product_attention(q, k, v)
  local d2 = F.scaled_dot_product_attention(q, k, v, {scale = 1 / math.sqrt(2)})
  T.close(d1, d2, 1e-7)
end)

T.case("rotary embedding", function()
  -- x [B=1, T=2, H=1, D=4]: pairs (x[1], x[3]) and (x[2], x[4]); position 1 angle 0 (identity),
  -- position 2 a quarter turn on the first pair (cos 0, sin 1) and a half turn on the second
  local x = sr.tensor({{{{1, 2, 3, 4}}, {{1, 2, 3, 4}}}})
  local cos, sin = sr.tensor({{1, 1}, {0, -1}}), sr.tensor({{0, 0}, {1, 0}})
  -- out1 = x1 cos + x2 sin, out2 = x2 cos - x1 sin
  T.close(F.rotary(x, cos, sin), {1, 2, 3, 4, 3, -2, -1, -4}, 1e-7)
  -- the tables may carry the records' [1, T, 1, D/2] shape; bf16 x with fp32 tables gives fp32
  T.close(F.rotary(x, cos:view(1, 2, 1, 2), sin:view(1, 2, 1, 2)), {1, 2, 3, 4, 3, -2, -1, -4}, 1e-7)
  T.eq(F.rotary(F.cast(x, "bfloat16"), cos, sin).dtype, "float32")
  T.eq(F.rotary(F.cast(x, "bfloat16"), F.cast(cos, "bfloat16"), F.cast(sin, "bfloat16")).dtype, "bfloat16")
end)

T.case("casts and dtypes", function()
  local a = sr.tensor({1.7, -1.7})
  T.close(F.cast(a, "int32"), {1, -1})
  T.eq(F.cast(a, "bfloat16").dtype, "bfloat16")
  T.eq((a:double() + a).dtype, "float64", "mixed dtypes promote")
  T.close(F.sum(sr.ones(3, {dtype = "bfloat16"})), {3})
end)

T.done()
