-- test_gpu_ops.lua: every speedrun.F op, forward and backward (through autograd), on cuda
-- against the CPU reference kernels run in float64 on the same (dtype-rounded) inputs.
-- Shapes include odd sizes, non-contiguous (transposed, narrowed) and broadcast (expanded)
-- inputs; dtypes float32 and bfloat16. Error measure ||gpu - ref|| / ||ref|| in float64;
-- tolerances: float32 2e-5 (fast-math exp/log), bfloat16 1e-2 forward, 2e-2 gradients (the
-- upstream gradient and every intermediate are rounded to bf16 too). NaN never passes. Fresh
-- random inputs for every check. Skips (exit 77) without a usable GPU.
local sr = speedrun
local F = sr.F
local T = require "speedrun.testing"

-- SR_TEST_DEVICE=cpu runs the same comparisons with the CPU kernels in float32/bfloat16 on the
-- "device" side (a dry run of this file on a machine without a GPU)
local DEV = os.getenv("SR_TEST_DEVICE") or "cuda"
local ok, why = sr.cuda.available()
if DEV == "cuda" and not ok then T.skip("no usable GPU: " .. tostring(why)) end
sr.manual_seed(20261126)

local FWD = {float32 = 2e-5, bfloat16 = 1e-2}
local BWD = {float32 = 2e-5, bfloat16 = 2e-2}
local DTYPES = {"float32", "bfloat16"}
local nchecks = 0

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

-- input spec: {shape, layout = "c" | "t" | "n" | "b", gen = "randn" | "pos" | "uniform", grad = true}
-- or {int = true, shape =, lo =, hi =} for int32 index tensors (shared by both sides).
local function leaf_shape(spec)
  local s = {table.unpack(spec[1])}
  local n = #s
  if spec.layout == "t" then s[n - 1], s[n] = s[n], s[n - 1]
  elseif spec.layout == "n" then s[n] = s[n] + 3
  elseif spec.layout == "b" then s[1] = 1 end
  return s
end

local function view_of(spec, leaf)
  local s = spec[1]
  if spec.layout == "t" then return leaf:transpose(-1, -2)
  elseif spec.layout == "n" then return leaf:narrow(-1, 2, s[#s])
  elseif spec.layout == "b" then return leaf:expand(s) end
  return leaf
end

local function gen(spec)
  local ls = leaf_shape(spec)
  if spec.gen == "pos" then return F.add(F.abs(sr.randn(ls)), 0.5) end
  if spec.gen == "uniform" then return sr.rand(ls) end
  if spec.gen == "small" then return F.mul(sr.randn(ls), 0.3) end
  if spec.gen == "logits" then return F.mul(sr.randn(ls), 20) end   -- across tanh's and sigmoid's bends
  return sr.randn(ls)
end

-- the inputs on one side: device, dtype (ref: cpu float64 of the dtype-rounded values)
local function build(specs, bases, device, dtype)
  local leaves, views = {}, {}
  for i, spec in ipairs(specs) do
    if spec.int then
      views[i] = bases[i]:to(device)
    else
      local rounded = bases[i]:to("cpu", dtype)
      local leaf = (device == "cpu" and rounded:to("cpu", "float64") or rounded:to(device)):detach()
      if spec.grad ~= false then leaf.requires_grad = true end
      leaves[i] = leaf
      views[i] = view_of(spec, leaf)
    end
  end
  return leaves, views
end

local function as_list(r) if sr.is_tensor(r) then return {r} end return r end

local function is_float(t) return t.dtype ~= "int32" end

local function compare(what, got, ref, tol)
  nchecks = nchecks + 1
  if not is_float(got) then
    local a, b = got:to("cpu"):tolist(), ref:to("cpu"):tolist()
    T.close(a, b, 0, what)
    return
  end
  local e = T.rel_err(got, ref)
  if not (e <= tol) then error(("%s: relative error %.3g > %g"):format(what, e, tol), 3) end
end

-- check(name, f, specs [, opts]): opts.dtypes, opts.grad (default true), opts.fwd_tol/bwd_tol
-- (tables by dtype), opts.ref_dtype (the reference's dtype, default float64)
local function check(name, f, specs, opts)
  opts = opts or {}
  for _, dt in ipairs(opts.dtypes or DTYPES) do
    local label = ("%s %s"):format(name, dt)
    T.case(label, function()
      local bases = {}
      for i, spec in ipairs(specs) do
        if spec.int then bases[i] = sr.randint(spec.lo or 0, spec.hi, spec.shape) else bases[i] = gen(spec) end
      end
      local gl, gv = build(specs, bases, DEV, dt)
      local rl, rv = build(specs, bases, "cpu", dt)
      local gout, rout = as_list(f(table.unpack(gv))), as_list(f(table.unpack(rv)))
      T.eq(#gout, #rout, label .. ": number of outputs")
      for k = 1, #gout do
        T.eq(gout[k].device, DEV, label .. ": output device")
        T.eq(shape_str(gout[k].shape), shape_str(rout[k].shape), label .. ": output shape")
        compare(("%s output %d"):format(label, k), gout[k], rout[k], (opts.fwd_tol or FWD)[dt])
      end
      if opts.grad == false then return end
      -- backward: loss = sum_k sum(out_k * g_k) with random upstream gradients
      local gloss, rloss
      for k = 1, #gout do
        if is_float(gout[k]) and gout[k].requires_grad then
          local g = sr.randn(gout[k].shape)
          local gg = g:to("cpu", gout[k].dtype):to(DEV)
          local rg = g:to("cpu", gout[k].dtype):to("cpu", rout[k].dtype)
          local gl_ = F.sum(F.mul(gout[k], gg):float())
          local rl_ = F.sum(F.mul(rout[k], rg))
          gloss = gloss and gloss + gl_ or gl_
          rloss = rloss and rloss + rl_ or rl_
        end
      end
      if not gloss then return end
      gloss:backward()
      rloss:backward()
      for i, spec in ipairs(specs) do
        if not spec.int and spec.grad ~= false then
          local ga, ra = gl[i].grad, rl[i].grad
          T.ok(ra ~= nil, label .. ": reference has no grad for input " .. i)
          T.ok(ga ~= nil, label .. ": no gradient for input " .. i)
          T.eq(ga.device, DEV, label .. ": grad device")
          compare(("%s grad %d"):format(label, i), ga, ra, (opts.bwd_tol or BWD)[dt])
        end
      end
    end)
  end
end

-- ------------------------------------------------------------------------------------ unary
local shapes = {{{7}}, {{3, 5}}, {{4, 33, 17}}, {{3, 5}, layout = "t"}, {{6, 9}, layout = "n"}, {{2, 1000}}}
-- every F.<name>(x) of the registry's list (sr.op_names.unary), with the inputs some need
local unary_gen = {exp = "small", log = "pos", sqrt = "pos", rsqrt = "pos"}
local unary = {}
for _, name in ipairs(sr.op_names.unary) do unary[#unary + 1] = {name, F[name], unary_gen[name]} end
for _, u in ipairs {
  {"gelu", F.gelu}, {"gelu_tanh", function(x) return F.gelu(x, "tanh") end},
  {"add_scalar", function(x) return x + 2.5 end}, {"mul_scalar", function(x) return x * -1.5 end},
  {"rsub_scalar", function(x) return 2 - x end}, {"rdiv_scalar", function(x) return F.div(2, x) end, "pos"},
  {"pow_scalar", function(x) return F.pow(x, 3) end}, {"pow_scalar_frac", function(x) return F.pow(x, 0.5) end, "pos"},
  {"softcap", function(x) return F.softcap(x, 2.0) end},
} do unary[#unary + 1] = u end
for _, u in ipairs(unary) do
  for _, s in ipairs(shapes) do
    check(u[1] .. " " .. shape_str(s[1]) .. (s.layout or ""), u[2], {{s[1], layout = s.layout, gen = u[3]}})
  end
end

-- ----------------------------------------------------------------------------------- binary
local bshapes = {
  {{5}, {5}}, {{3, 7}, {3, 7}}, {{4, 5, 6}, {5, 6}}, {{4, 5, 6}, {4, 1, 6}}, {{4, 5, 6}, {1}}, {{2, 3, 65}, {2, 3, 65}},
}
-- every F.<name>(a, b) of the registry's list (sr.op_names.binary): the comparisons without
-- gradients, the others with, and the inputs some need
local binary_gen = {div = {nil, "pos"}, pow = {"pos", "small"}}
local is_compare, binary, comparisons = {}, {}, {}
for _, name in ipairs(sr.op_names.compare) do is_compare[name] = true end
for _, name in ipairs(sr.op_names.binary) do
  local g = binary_gen[name] or {}
  if is_compare[name] then comparisons[#comparisons + 1] = {name, F[name]}
  else binary[#binary + 1] = {name, F[name], g[1], g[2]} end
end
for _, b in ipairs(binary) do
  for _, s in ipairs(bshapes) do
    check(("%s %s %s"):format(b[1], shape_str(s[1]), shape_str(s[2])), b[2], {{s[1], gen = b[3]}, {s[2], gen = b[4]}})
  end
  -- non-contiguous and broadcast (expanded) operands
  check(b[1] .. " t/b", b[2], {{{6, 4, 9}, layout = "t", gen = b[3]}, {{6, 4, 9}, layout = "b", gen = b[4]}})
  check(b[1] .. " n/t", b[2], {{{5, 8}, layout = "n", gen = b[3]}, {{5, 8}, layout = "t", gen = b[4]}})
end
for _, c in ipairs(comparisons) do
  check(c[1], function(a, b) return c[2](a, b) end, {{{4, 5, 6}}, {{5, 6}}}, {grad = false})
  check(c[1] .. " self", function(a) return c[2](a, a) end, {{{3, 7}, layout = "t"}}, {grad = false})
end
check("where", function(c, a, b) return F.where(F.gt(c, 0), a, b) end,
      {{{4, 5, 6}, grad = false}, {{4, 5, 6}, layout = "t"}, {{5, 6}}})
check("where scalar", function(c, a) return F.where(F.gt(c, 0), a, 0.5) end, {{{3, 9}, grad = false}, {{3, 9}, layout = "n"}})
check("masked_fill", function(x, m) return F.masked_fill(x, F.lt(m, 0), -3) end, {{{5, 7}}, {{5, 7}, grad = false}})
check("lerp", function(a, b) return F.lerp(a, b, 0.3) end, {{{4, 9}}, {{4, 9}, layout = "b"}})
-- one element broadcast to the whole shape (the vectorised scalar path; odd and aligned sizes).
-- The scalar's own gradient is a 37k-term sum of random-sign bf16 products whose relative error
-- grows as it cancels (3.6 % seen), so only the tensor's gradient is compared here; broadcast
-- reductions are checked above with smaller sums.
for _, s in ipairs {{37, 1001}, {64, 1000}} do
  check("mul by a broadcast scalar " .. shape_str(s), function(a, b) return F.mul(a, b) end, {{s}, {{1, 1}, grad = false}})
  check("add a broadcast scalar " .. shape_str(s), function(a, b) return F.add(a, b) end, {{s}, {{1, 1}, grad = false}})
end

-- ------------------------------------------------------------------------------- reductions
local rshapes = {{{7}}, {{5, 9}}, {{4, 33, 17}}, {{3, 5000}}, {{6, 4}, layout = "t"}, {{3, 8}, layout = "n"}}
for _, name in ipairs(sr.op_names.reduce) do
  local r = {name, F[name]}
  for _, s in ipairs(rshapes) do
    local sp = {{s[1], layout = s.layout}}
    local tag = r[1] .. " " .. shape_str(s[1]) .. (s.layout or "")
    -- max: bf16 rounding makes ties likely, and a tie may send the gradient to either position
    local runs = r[1] == "max" and {{dtypes = {"float32"}}, {dtypes = {"bfloat16"}, grad = false}} or {{}}
    for _, o in ipairs(runs) do
      check(tag .. " all", function(x) return r[2](x) end, sp, o)
      for d = 1, #s[1] do
        check(tag .. " dim " .. d, function(x) return (r[2](x, d)) end, sp, o)
        check(tag .. " dim " .. d .. " keep", function(x) return (r[2](x, d, true)) end, sp, o)
      end
      check(tag .. " dim -1", function(x) return (r[2](x, -1)) end, sp, o)
    end
  end
end
check("argmax", function(x) return F.argmax(x, 2) end, {{{5, 37}}}, {dtypes = {"float32"}, grad = false})
check("cumsum", function(x) return F.cumsum(x, 2) end, {{{5, 3000}}}, {fwd_tol = {float32 = 1e-4, bfloat16 = 2e-2}})
check("cumsum dim 1", function(x) return F.cumsum(x, 1) end, {{{37, 5}, layout = "t"}}, {fwd_tol = {float32 = 1e-4, bfloat16 = 2e-2}})
check("cumsum int32", function(x) return F.cumsum(x, 1) end, {{int = true, shape = {65536}, hi = 2}}, {dtypes = {"float32"}, grad = false})
check("argsort", function(x) return F.argsort(x, 2) end, {{{6, 700}}}, {dtypes = {"float32"}, grad = false})
check("argsort descending ties", function(x) return F.argsort(x, 1, {descending = true}) end,
      {{int = true, shape = {512, 512}, hi = 2}}, {dtypes = {"float32"}, grad = false})
check("max indices", function(x) local _, i = F.max(x, 1); return i end, {{{37, 5}, layout = "t"}}, {dtypes = {"float32"}, grad = false})
check("var", function(x) return F.var(x, 2) end, {{{4, 33}}})
check("std", function(x) return F.std(x, 1, {keepdim = true}) end, {{{9, 5}, layout = "t"}})
check("norm", function(x) return F.norm(x) end, {{{3, 7, 5}}})

-- ---------------------------------------------------------------------------- linear algebra
local mm = {
  {{17, 33}, {33, 9}}, {{1, 5}, {5, 1}}, {{3, 17, 33}, {33, 9}}, {{3, 17, 33}, {3, 33, 9}}, {{2, 1, 5, 7}, {3, 7, 4}},
  {{33}, {33, 9}}, {{17, 33}, {33}}, {{64, 128}, {128, 96}},
}
for _, s in ipairs(mm) do
  check(("matmul %s %s"):format(shape_str(s[1]), shape_str(s[2])), F.matmul, {{s[1]}, {s[2]}})
end
check("matmul t,t", F.matmul, {{{17, 33}, layout = "t"}, {{33, 9}, layout = "t"}})
check("matmul batched t,n", F.matmul, {{{3, 17, 33}, layout = "t"}, {{3, 33, 9}, layout = "n"}})
check("matmul bcast", F.matmul, {{{4, 17, 33}, layout = "b"}, {{4, 33, 9}}})
check("linear", F.linear, {{{5, 7, 33}}, {{9, 33}}, {{9}}})
check("linear nobias", F.linear, {{{13, 64}}, {{96, 64}}})
check("linear t", function(x, w) return F.linear(x, w) end, {{{13, 33}, layout = "t"}, {{9, 33}, layout = "n"}})
check("embedding", function(idx, w) return F.embedding(idx, w) end, {{int = true, shape = {3, 11}, hi = 29}, {{29, 17}}})
check("embedding 768", function(idx, w) return F.embedding(idx, w) end, {{int = true, shape = {64}, hi = 50}, {{50, 768}}})

-- ------------------------------------------------------------------------------------ norms
for _, C in ipairs {7, 64, 77, 768} do
  check("rms_norm C=" .. C, function(x, w) return F.rms_norm(x, w, 1e-6) end, {{{5, 3, C}}, {{C}}})
  check("rms_norm noweight C=" .. C, function(x) return F.rms_norm(x) end, {{{13, C}}})
  check("layer_norm C=" .. C, function(x, w, b) return F.layer_norm(x, w, b) end, {{{5, 3, C}}, {{C}}, {{C}}})
  check("layer_norm noaffine C=" .. C, function(x) return F.layer_norm(x) end, {{{13, C}}})
end
check("rms_norm t", function(x, w) return F.rms_norm(x, w) end, {{{9, 33}, layout = "t"}, {{33}}})
check("layer_norm n", function(x, w, b) return F.layer_norm(x, w, b) end, {{{9, 33}, layout = "n"}, {{33}}, {{33}}})

for _, s in ipairs {{{7}}, {{5, 37}}, {{3, 4, 129}}, {{6, 9}, layout = "t"}, {{2, 2000}}} do
  local tag = shape_str(s[1]) .. (s.layout or "")
  check("softmax " .. tag, function(x) return F.softmax(x) end, {{s[1], layout = s.layout}})
  check("log_softmax " .. tag, function(x) return F.log_softmax(x) end, {{s[1], layout = s.layout}})
  if #s[1] > 1 then
    check("softmax dim1 " .. tag, function(x) return F.softmax(x, 1) end, {{s[1], layout = s.layout}})
    check("log_softmax dim1 " .. tag, function(x) return F.log_softmax(x, 1) end, {{s[1], layout = s.layout}})
  end
end

for _, s in ipairs {{13, 37}, {64, 50304}, {3, 5, 9}} do
  local ts = {table.unpack(s, 1, #s - 1)}
  local V = s[#s]
  local tag = shape_str(s)
  for _, red in ipairs {"mean", "sum", "none"} do
    check(("cross_entropy %s %s"):format(tag, red), function(l, t) return F.cross_entropy(l, t, {reduction = red}) end,
          {{s}, {int = true, shape = ts, hi = V}})
  end
  check("cross_entropy ignore " .. tag, function(l, t) return F.cross_entropy(l, t, {ignore_index = -1}) end,
        {{s}, {int = true, shape = ts, lo = -1, hi = math.min(V, 4)}})
  -- the gradient made in the forward over intermediate logits (l * 1), scaled by the upstream one
  for _, red in ipairs {"mean", "sum"} do
    check(("cross_entropy inplace %s %s"):format(tag, red),
          function(l, t) return F.cross_entropy(l * 1, t, {reduction = red, ignore_index = -1, inplace = true}) end,
          {{s}, {int = true, shape = ts, lo = -1, hi = V}})
  end
end
check("cross_entropy t", function(l, t) return F.cross_entropy(l, t) end, {{{9, 33}, layout = "t"}, {int = true, shape = {9}, hi = 33}})

-- rotary: x [B,T,H,D] (also a transposed [B,H,T,D] view), tables [1,T,1,D/2] without gradient;
-- bf16 x with fp32 tables (records 2-4) gives fp32
for _, s in ipairs {{2, 37, 3, 16}, {2, 64, 6, 128}} do
  local tab = {{1, s[2], 1, s[4] // 2}, grad = false}
  check("rotary " .. shape_str(s), function(x, c, sn) return F.rotary(x, c, sn) end, {{s}, tab, tab})
  check("rotary transposed " .. shape_str(s), function(x, c, sn) return F.rotary(x:transpose(2, 3), c, sn) end,
        {{{s[1], s[3], s[2], s[4]}}, tab, tab})
end
T.case("rotary bf16 x with f32 tables", function()
  local x, c, sn = sr.randn(2, 37, 3, 16), sr.randn(1, 37, 1, 8), sr.randn(1, 37, 1, 8)
  local got = F.rotary(x:to(DEV, "bfloat16"), c:to(DEV), sn:to(DEV))
  T.eq(got.dtype, "float32", "promoted to f32")
  compare("rotary bf16 x f32 tables", got, F.rotary(x:to("cpu", "bfloat16"):to("cpu", "float64"), c:double(), sn:double()), 1e-6)
end)

-- -------------------------------------------------------------------------------- attention
for _, a in ipairs {{2, 3, 37, 16}, {1, 2, 64, 32}, {2, 2, 37, 64}, {1, 2, 130, 64}, {1, 1, 70, 128}} do
  for _, causal in ipairs {true, false} do
    check(("sdpa %s causal=%s"):format(shape_str(a), tostring(causal)),
          function(q, k, v) return F.scaled_dot_product_attention(q, k, v, {causal = causal}) end,
          {{a, gen = "small"}, {a, gen = "small"}, {a}})
  end
end
check("sdpa scale", function(q, k, v) return F.scaled_dot_product_attention(q, k, v, {scale = 0.3}) end,
      {{{1, 2, 33, 64}}, {{1, 2, 33, 64}}, {{1, 2, 33, 64}}})
-- q, k, v straight out of a fused qkv projection (strided views; the flash path takes them as is)
for _, D in ipairs {16, 64} do
  local B, Tn, H = 2, 67, 3
  local C = H * D
  check("sdpa from qkv D=" .. D, function(qkv)
    local q, k, v = table.unpack(F.split(qkv, C, 3))
    local function heads(t) return t:view(B, Tn, H, D):transpose(2, 3) end
    local y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
    return y:transpose(2, 3):reshape(B, Tn, C)
  end, {{{B, Tn, 3 * C}, gen = "small"}})
end

-- ------------------------------------------------------------------------ casts, views, cat
check("cast to bf16", function(x) return F.cast(x, "bfloat16") end, {{{5, 9}, layout = "t"}}, {dtypes = {"float32"}, fwd_tol = {float32 = 1e-2}, bwd_tol = {float32 = 1e-2}})
check("cast to f32", function(x) return F.cast(x, "float32") end, {{{5, 9}}}, {dtypes = {"bfloat16"}})
check("cat", function(a, b) return F.cat({a, b}, 2) end, {{{3, 5}}, {{3, 7}, layout = "n"}})
check("cat dim1", function(a, b, c) return F.cat({a, b, c}, 1) end, {{{2, 5}}, {{3, 5}, layout = "t"}, {{1, 5}}})
check("stack", function(a, b) return F.stack({a, b}, 2) end, {{{3, 5}}, {{3, 5}}})
check("split", function(x) local p = F.split(x, 4, 2); return {p[1], p[3]} end, {{{3, 11}}})  -- piece 2 gets no grad
check("split many", function(x) local p = F.split(x, 2, 1); return {p[1], p[5]} end, {{{9, 3}}})
check("chunk", function(x) local p = F.chunk(x, 3, -1); return {F.mul(p[1], p[2]), p[3]} end, {{{4, 12}, layout = "t"}})
check("views", function(x) return x:view(6, 10):transpose(1, 2):reshape(4, 15):unsqueeze(1):expand(2, 4, 15):permute(3, 1, 2) end,
      {{{3, 20}}})
check("narrow/squeeze", function(x) return x:narrow(2, 2, 3):squeeze(3) end, {{{4, 6, 1}}})

-- the records' compositions: softcap 30 tanh(z/30) (records 9-18; tanh's backward from its output,
-- the gradient written over the upstream one), 30 sigmoid(z/7.5) (record 19), and learned
-- scalars mixing two streams (lambdas:select(1, i), (1 - lamb) v + lamb v1; records 9-11)
check("softcap tanh", function(z) return F.mul(F.tanh(F.mul(z, 1 / 30)), 30) end, {{{33, 517}, gen = "logits"}})
check("softcap sigmoid", function(z) return F.mul(F.sigmoid(F.div(z, 7.5)), 30) end, {{{33, 517}, gen = "logits"}})
check("learned scalars", function(l, x, x0)
  return F.add(F.mul(l:select(1, 1), x), F.mul(l:select(1, 2), x0))
end, {{{2}}, {{4, 9, 16}}, {{4, 9, 16}}})
-- the scalar's gradient is sum(g v1) - sum(g v), two bf16-rounded reductions that can cancel: 0.0241
-- measured on an H200 against the float64 reference, so bf16 gets 5e-2 here
check("lambda mix", function(l, v, v1) return F.add(F.mul(F.sub(1, l), v), F.mul(l, v1)) end, {{{1}}, {{6, 40}}, {{6, 40}}},
  {bwd_tol = {float32 = BWD.float32, bfloat16 = 5e-2}})

-- ------------------------------------------------------------------------------------ adamw
-- state float32, or bfloat16 (record 10's bf16 model: torch keeps m and v in the param's dtype;
-- the reference side then keeps bf16 state too, computed in float64 and rounded once)
for _, dt in ipairs(DTYPES) do
  for _, sdt in ipairs(DTYPES) do
    for _, use_sched in ipairs {false, true} do
      T.case(("adamw_ %s state %s sched=%s"):format(dt, sdt, tostring(use_sched)), function()
        local n = 1031
        local p0, m0, v0 = sr.randn(n), F.mul(sr.randn(n), 0.1), F.add(F.abs(sr.randn(n)), 0.01)
        local sides = {}
        for _, side in ipairs {"dev", "ref"} do
          local dev = side == "ref" and "cpu" or DEV
          local rdt = side == "ref" and "float64" or dt
          local s = {p = p0:to("cpu", dt):to(dev, rdt), m = m0:to(dev, sdt):clone(), v = v0:to(dev, sdt):clone(), dev = dev, rdt = rdt}
          if use_sched then s.sched = sr.tensor({0.02, 2}, {dtype = "float32", device = dev}) end
          sides[side] = s
        end
        for step = 1, 3 do
          local g = sr.randn(n)
          for _, s in pairs(sides) do
            local gg = g:to("cpu", dt):to(s.dev, s.rdt)
            if s.sched then s.sched:narrow(1, 2, 1):add_(1) end
            F.adamw_(s.p, gg, s.m, s.v, {lr = 0.01, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1,
                                         step = step, sched = s.sched})
          end
        end
        local tp = dt == "bfloat16" and 1e-2 or sdt == "bfloat16" and 1e-4 or 2e-5
        local ts = sdt == "bfloat16" and 1e-2 or dt == "bfloat16" and 1e-2 or 2e-5
        compare("adamw param", sides.dev.p, sides.ref.p, tp)
        compare("adamw m", sides.dev.m, sides.ref.m, ts)
        compare("adamw v", sides.dev.v, sides.ref.v, ts)
      end)
    end
  end
end

-- ------------------------------------------------------- multi-tensor AdamW and gradient clipping
-- 70 parameters of mixed sizes (1 element, odd, past a 16384-element chunk): two launches on cuda
local MSIZES = {}
for k = 1, 70 do MSIZES[k] = ({1, 7, 1003, 16384 * 2 + 5, 4096, 3})[(k - 1) % 6 + 1] end
for _, dt in ipairs(DTYPES) do
  for _, use_sched in ipairs {false, true} do
    local sdt = use_sched and dt or "float32"   -- bf16 state with bf16 params (record 10), once
    T.case(("adamw_multi_ %s state %s sched=%s == adamw_ per tensor"):format(dt, sdt, tostring(use_sched)), function()
      local init, sides = {}, {}
      for k, n in ipairs(MSIZES) do init[k] = {sr.randn(n), F.mul(sr.randn(n), 0.1), F.add(F.abs(sr.randn(n)), 0.01)} end
      for _, side in ipairs {"multi", "single"} do
        local s = {p = {}, m = {}, v = {}}
        for k, x in ipairs(init) do
          s.p[k], s.m[k], s.v[k] = x[1]:to(DEV, dt):clone(), x[2]:to(DEV, sdt):clone(), x[3]:to(DEV, sdt):clone()
        end
        if use_sched then s.sched = sr.tensor({0.02, 2}, {dtype = "float32", device = DEV}) end
        sides[side] = s
      end
      for step = 1, 3 do
        local gs = {}
        for k, n in ipairs(MSIZES) do gs[k] = sr.randn(n):to(DEV, dt) end
        for side, s in pairs(sides) do
          if s.sched then s.sched:narrow(1, 2, 1):add_(1) end
          local o = {lr = 0.01, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, step = step, sched = s.sched}
          if side == "multi" then F.adamw_multi_(s.p, gs, s.m, s.v, o)
          else for k = 1, #MSIZES do F.adamw_(s.p[k], gs[k], s.m[k], s.v[k], o) end end
        end
      end
      for k = 1, #MSIZES do   -- the same arithmetic per element: the same bits
        compare("adamw_multi param " .. k, sides.multi.p[k], sides.single.p[k], 0)
        compare("adamw_multi m " .. k, sides.multi.m[k], sides.single.m[k], 0)
        compare("adamw_multi v " .. k, sides.multi.v[k], sides.single.v[k], 0)
      end
    end)
  end
end

-- clip_grad_norm_ over 170 gradients (f32 and bf16 mixed: two launches of 160 on cuda) against the
-- CPU reference in float64
T.case("clip_grad_norm_ (sumsq_multi + clip_multi) against float64", function()
  local dev, ref = {}, {}
  for k = 1, 170 do
    local n = ({1, 7, 1003, 16384 * 3 + 1, 64})[(k - 1) % 5 + 1]
    local dt = k % 2 == 0 and "bfloat16" or "float32"
    local g = sr.randn(n):to("cpu", dt)
    dev[k] = sr.zeros(n, {dtype = dt, device = DEV}); dev[k].grad = g:to(DEV):clone()
    ref[k] = sr.zeros(n, {dtype = "float64"}); ref[k].grad = g:to("cpu", "float64"):clone()
  end
  local nd, nr = sr.optim.clip_grad_norm_(dev, 1.0), sr.optim.clip_grad_norm_(ref, 1.0)
  T.eq(nd.device, DEV)
  compare("clip norm", nd, nr, 1e-6)
  for k = 1, 170, 13 do
    compare("clipped grad " .. k, dev[k].grad, ref[k].grad, FWD[dev[k].dtype])
  end
end)

io.stdout:write(("%d comparisons\n"):format(nchecks))
T.done()
