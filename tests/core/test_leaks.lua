-- Errors leak nothing: every documented error case of the ops, views, casts, factories,
-- autograd and the optimizer, raised many times under pcall, must leave the live tensor and
-- storage counts and the live bytes exactly where they were (speedrun.core.live_tensors, after
-- a full collection). A failure longjmps through C frames holding references; the core keeps
-- them on its scratch list (host/core/scratch.h), which the failure path releases.
-- SPEEDRUN_LEAK_ITERS sets the repetitions (the valgrind test runs a few).
local sr = require "speedrun"
local T = require "speedrun.testing"
local core = require "speedrun.core"
local optim = require "speedrun.optim"
local F = sr.F

local ITERS = tonumber(os.getenv("SPEEDRUN_LEAK_ITERS") or "") or 200
local i32 = {dtype = "int32"}

local function live()
  collectgarbage(); collectgarbage()
  return core.live_tensors()
end

-- {name, fn, pattern}: fn must raise an error matching pattern (plain text)
local cases = {}
local function case(name, pattern, fn) cases[#cases + 1] = {name = name, pattern = pattern, fn = fn} end

-- element-wise and broadcasting
case("add broadcast", "cannot be broadcast together", function() return sr.zeros(2, 3) + sr.zeros(4) end)
case("add broadcast, mixed dtypes (casts first)", "cannot be broadcast together",
  function() return F.add(sr.zeros(2, 3), sr.zeros(4, {dtype = "float64"})) end)
case("mul broadcast, bf16 and f32", "cannot be broadcast together",
  function() return F.mul(sr.zeros(2, 3, {dtype = "bfloat16"}), sr.zeros(5)) end)
case("unary on int32", "expected a float32, float64 or bfloat16 tensor", function() return F.exp(sr.zeros(2, i32)) end)
case("gelu approximate", "approximate must be 'none' or 'tanh'", function() return F.gelu(sr.zeros(2), "fast") end)
case("binary without a tensor", "bad argument #1 to 'add'", function() return F.add(1, 2) end)
case("where shapes", "cannot be broadcast together", function() return F.where(sr.zeros(2), sr.zeros(3), sr.zeros(3)) end)
case("where with a number and bad shapes", "cannot be broadcast together",
  function() return F.where(sr.zeros(4), 1, sr.zeros(3)) end)
case("where dtypes", "dtype", function() return F.where(sr.zeros(2), sr.zeros(2), sr.zeros(2, {dtype = "float64"})) end)
-- reductions
case("sum dim", "out of range", function() return sr.zeros(2, 3):sum(3) end)
case("max dim", "out of range", function() return F.max(sr.zeros(2, 3), 5) end)
case("argmax dim", "out of range", function() return F.argmax(sr.zeros(2, 3), -4) end)
case("mean of int32", "expected a float32", function() return F.mean(sr.zeros(2, 3, i32)) end)
-- matmul and layers
case("matmul inner", "matmul: bad argument #2", function() return F.matmul(sr.zeros(3, 4), sr.zeros(5, 6)) end)
case("matmul vector inner", "does not match", function() return F.matmul(sr.zeros(4), sr.zeros(5, 6)) end)
case("matmul matrix-vector inner", "does not match", function() return F.matmul(sr.zeros(3, 4), sr.zeros(5)) end)
case("matmul batched inner", "does not match", function() return F.matmul(sr.zeros(2, 3, 4), sr.zeros(2, 5, 6)) end)
case("matmul batch broadcast", "cannot be broadcast", function() return F.matmul(sr.zeros(2, 3, 4), sr.zeros(3, 4, 6)) end)
case("matmul dtype", "dtype float64 does not match float32",
  function() return F.matmul(sr.zeros(2, 2), sr.zeros(2, 2, {dtype = "float64"})) end)
case("matmul 0-d", "0-d tensor", function() return F.matmul(sr.zeros(2, 2), sr.tensor(1)) end)
case("matmul not a tensor", "bad argument #2 to 'matmul'", function() return F.matmul(sr.zeros(2), "x") end)
case("linear weight", "linear: bad argument #2", function() return F.linear(sr.zeros(2, 3), sr.zeros(4, 5)) end)
case("linear bias", "linear: bad argument #3", function() return F.linear(sr.zeros(2, 3), sr.zeros(4, 3), sr.zeros(5)) end)
case("embedding index too large", "out of range",
  function() return F.embedding(sr.tensor({1, 5}, i32), sr.zeros(5, 2)) end)
case("embedding index negative", "out of range", function() return F.embedding(sr.tensor({-1}, i32), sr.zeros(5, 2)) end)
case("embedding bad index, 2-D and recording", "out of range",
  function() return F.embedding(sr.tensor({{0, 1}, {2, 9}}, i32), sr.zeros(5, 2):requires_grad_()) end)
case("embedding float indices", "indices must be int32", function() return F.embedding(sr.zeros(3), sr.zeros(4, 2)) end)
case("embedding 1-D weight", "weight must be 2-D", function() return F.embedding(sr.zeros(3, i32), sr.zeros(4)) end)
case("rms_norm weight", "rms_norm: bad argument #2", function() return F.rms_norm(sr.zeros(2, 3), sr.zeros(4)) end)
case("rms_norm eps", "eps must be >= 0", function() return F.rms_norm(sr.zeros(2, 3), nil, -1) end)
case("layer_norm bias", "layer_norm: bad argument #3",
  function() return F.layer_norm(sr.zeros(2, 3), sr.zeros(3), sr.zeros(4)) end)
case("softmax dim", "out of range", function() return F.softmax(sr.zeros(2, 3), 3) end)
case("log_softmax 0-d", "needs at least 1 dimension", function() return F.log_softmax(sr.tensor(1)) end)
case("to_fp8 dtype", "to_fp8: bad argument #2", function() return F.to_fp8(sr.zeros(2, 3), "float32", 1) end)
case("scaled_mm row-major b", "column-major",
  function() return F.scaled_mm(F.to_fp8(sr.zeros(2, 16), "e4m3", 1), F.to_fp8(sr.zeros(16, 16), "e4m3", 1)) end)
case("scaled_mm e5m2 x e5m2", "e5m2 x e5m2",
  function() return F.scaled_mm(F.to_fp8(sr.zeros(2, 16), "e5m2", 1), F.to_fp8(sr.zeros(16, 16), "e5m2", 1):transpose(1, 2)) end)
case("cross_entropy shapes", "cross_entropy: bad argument #2",
  function() return F.cross_entropy(sr.zeros(2, 5), sr.zeros(3, i32)) end)
case("cross_entropy float targets", "targets must be int32",
  function() return F.cross_entropy(sr.zeros(2, 5), sr.zeros(2)) end)
case("cross_entropy target too large", "out of range",
  function() return F.cross_entropy(sr.zeros(2, 4), sr.tensor({0, 4}, i32)) end)
case("cross_entropy target negative, ignore_index -1", "out of range",
  function() return F.cross_entropy(sr.zeros(2, 4), sr.tensor({0, -3}, i32), {ignore_index = -1}) end)
case("cross_entropy bad target, sum, recording", "out of range",
  function() return F.cross_entropy(sr.zeros(3, 4):requires_grad_(), sr.tensor({0, 1, 7}, i32), {reduction = "sum"}) end)
case("cross_entropy bad target, none", "out of range",
  function() return F.cross_entropy(sr.zeros(2, 2, 4), sr.tensor({{0, 1}, {2, 8}}, i32), {reduction = "none"}) end)
case("cross_entropy bad target, inplace", "out of range", function()
  local x = sr.zeros(2, 4):requires_grad_()
  return F.cross_entropy(x * 2, sr.tensor({0, 4}, i32), {inplace = true})
end)
case("cross_entropy reduction", "reduction must be", function()
  return F.cross_entropy(sr.zeros(2, 4), sr.tensor({0, 1}, i32), {reduction = "avg"}) end)
case("cross_entropy inplace none", "inplace needs reduction", function()
  return F.cross_entropy(sr.zeros(2, 4), sr.tensor({0, 1}, i32), {reduction = "none", inplace = true}) end)
case("attention shapes", "scaled_dot_product_attention: bad argument #3", function()
  return F.scaled_dot_product_attention(sr.zeros(1, 2, 3, 4), sr.zeros(1, 2, 3, 4), sr.zeros(2, 3, 4)) end)
case("flex_attention mask length", "flex_attention: bad argument #4", function()
  local m = require("speedrun.attention").block_mask {T = 16, block = 4}
  return F.flex_attention(sr.zeros(1, 2, 8, 4), sr.zeros(1, 2, 8, 4), sr.zeros(1, 2, 8, 4), m) end)
case("flex mask lists bad index", "out of [0, NB)", function()
  return require("speedrun.attention").block_mask_from_lists {T = 16, block = 4, kv_num_blocks = sr.tensor({1, 1, 1, 1}, i32),
    kv_indices = sr.zeros(4, 4, i32):fill_(9)} end)
case("rotary odd D", "rotary: bad argument #1",
  function() return F.rotary(sr.zeros(1, 2, 3, 5), sr.zeros(2, 2), sr.zeros(2, 2)) end)
case("rotary tables", "rotary: bad argument #2",
  function() return F.rotary(sr.zeros(1, 2, 3, 4), sr.zeros(3, 2), sr.zeros(2, 2)) end)
case("rotary grad tables", "the tables take no gradient",
  function() return F.rotary(sr.zeros(1, 2, 3, 4), sr.zeros(2, 2):requires_grad_(), sr.zeros(2, 2)) end)
-- views
case("view shape", "view: shape [4,2] is invalid", function() return sr.zeros(2, 3):view(4, 2) end)
case("view strides", "use reshape", function() return sr.zeros(2, 3):transpose(1, 2):view(6) end)
case("view two -1", "only one dimension can be -1", function() return sr.zeros(2, 3):view(-1, -1) end)
case("reshape of a copy", "invalid", function() return sr.zeros(2, 3):transpose(1, 2):reshape(7) end)
case("reshape recording", "invalid",
  function() return sr.zeros(2, 3):requires_grad_():transpose(1, 2):reshape(4, 2) end)
case("narrow range", "narrow: range [2, 4) out of bounds", function() return sr.zeros(2, 3):narrow(2, 3, 2) end)
case("transpose dim", "out of range", function() return sr.zeros(2, 3):transpose(1, 3) end)
case("permute repeated", "repeated", function() return sr.zeros(2, 3):permute(1, 1) end)
case("squeeze dim", "out of range", function() return sr.zeros(2, 3):squeeze(4) end)
case("expand shape", "cannot be broadcast", function() return sr.zeros(2, 3):expand(2, 4) end)
case("split sizes", "piece sizes", function() return F.split_views(sr.zeros(6, 2), 1, {2, 2, 1}) end)
case("split sizes exceed", "piece sizes exceed", function() return F.split_views(sr.zeros(6, 2), 1, {4, 4}) end)
case("cat shapes", "cat: bad argument #2", function() return F.cat({sr.zeros(2, 3), sr.zeros(3, 3)}, 2) end)
case("cat dtypes", "cat: bad argument #3",
  function() return F.cat({sr.zeros(2, 3), sr.zeros(2, 3), sr.zeros(2, 3, {dtype = "float64"})}, 1) end)
case("cat entry", "entry 2 is not a tensor", function() return F.cat({sr.zeros(2), 5}) end)
case("stack shapes", "cat: bad argument #2", function() return F.stack({sr.zeros(2, 3), sr.zeros(3, 3)}) end)
case("stack recording", "cat: bad argument #3", function()
  local a = sr.zeros(2, 3):requires_grad_()
  return F.stack({a * 1, a * 2, sr.zeros(3, 2)}, 1)
end)
-- casts, copies, conversions
case("NaN to int32", "cannot be stored as int32", function() return sr.tensor({0 / 0, 1}):to("int32") end)
case("cast to a bad dtype", "unknown dtype", function() return F.cast(sr.zeros(2), "float16") end)
case("to a bad device", "unknown device 'tpu'", function() return sr.zeros(2):to("tpu") end)
case("copy_ shapes", "cannot be broadcast", function() return sr.zeros(2, 3):copy_(sr.zeros(4)) end)
case("item of many", "the tensor has 3 elements", function() return sr.zeros(3):item() end)
-- factories
case("zeros dtype", "bad option dtype 'float16'", function() return sr.zeros(2, {dtype = "float16"}) end)
case("tensor ragged", "ragged nested table", function() return sr.tensor({{1, 2}, {3}}) end)
case("tensor non-number", "", function() return sr.tensor({{1, 2}, {3, "x"}}) end)
case("zeros negative size", "negative", function() return sr.zeros(2, -3) end)
case("randint empty range", "empty range", function() return sr.randint(5, 5, {4}) end)
-- autograd
case("backward without a graph", "does not require grad", function() return sr.zeros(2):sum():backward() end)
case("backward of many elements", "implicit only for a one-element tensor",
  function() return (sr.zeros(3):requires_grad_() * 2):backward() end)
case("backward gradient shape", "gradient shape", function()
  return (sr.zeros(3):requires_grad_() * 2):backward(sr.zeros(4)) end)
case("backward twice", "a second time", function()
  local x = sr.ones(3):requires_grad_()
  local loss = F.sum(F.exp(x * 2) * x)
  loss:backward()
  loss:backward()
end)
case("backward after an in-place change", "modified in place", function()
  local x = sr.ones(3):requires_grad_()
  local h = x * 2
  local y = F.sum(F.exp(h) * h)
  h:add_(1)
  y:backward()
end)
case("custom function backward fails", "custom backward failed", function()
  local x = sr.ones(3):requires_grad_()
  local y = sr.no_grad(function() return x * 3 end)
  core.record_custom(function() error("custom backward failed") end, {}, {x}, {y})
  F.sum(F.exp(y) * 2):backward()
end)
case("custom function backward returns a wrong shape", "gradient of input 1 has shape [4]", function()
  local x = sr.ones(3):requires_grad_()
  local y = sr.no_grad(function() return x * 3 end)
  core.record_custom(function() return sr.ones(4) end, {}, {x}, {y})
  F.sum(F.exp(y) * 2):backward()
end)
case("custom function backward returns a string", "result 1 is a string", function()
  local x = sr.ones(3):requires_grad_()
  local y = sr.no_grad(function() return x * 3 end)
  core.record_custom(function() return "no" end, {}, {x}, {y})
  F.sum(F.exp(y) * 2):backward()
end)
case("grad shape", "grad: shape", function() local x = sr.zeros(3); x.grad = sr.zeros(4) end)
case("requires_grad option on int32", "option requires_grad needs a float dtype",
  function() return sr.zeros(2, {dtype = "int32", requires_grad = true}) end)
case("requires_grad on int32", "only float tensors can require grad", function() return sr.zeros(2, i32):requires_grad_() end)
-- optimizer
case("adamw_ state shape", "adamw: bad argument #3", function()
  return F.adamw_(sr.zeros(4), sr.zeros(4), sr.zeros(5), sr.zeros(4), {lr = 0.1, step = 1}) end)
case("adamw_ state dtype", "optimizer state m and v must be float32 or bfloat16, of one dtype", function()
  return F.adamw_(sr.zeros(4), sr.zeros(4), sr.zeros(4, {dtype = "float64"}), sr.zeros(4), {lr = 0.1, step = 1}) end)
case("adamw_ step", "step must be >= 1", function()
  return F.adamw_(sr.zeros(4), sr.zeros(4), sr.zeros(4), sr.zeros(4), {lr = 0.1, step = 0}) end)
case("adamw_ lr missing", "option 'lr' is required", function()
  return F.adamw_(sr.zeros(4), sr.zeros(4), sr.zeros(4), sr.zeros(4), {step = 1}) end)
case("adamw_multi_ lr missing", "option 'lr' is required", function()
  return F.adamw_multi_({sr.zeros(2)}, {sr.zeros(2)}, {sr.zeros(2)}, {sr.zeros(2)}, {step = 1}) end)
case("adamw_multi_ lists", "the four lists must have the same length", function()
  return F.adamw_multi_({sr.zeros(2)}, {}, {}, {}, {lr = 0.1, step = 1}) end)
case("adamw_multi_ state shape", "does not match the parameter's", function()
  return F.adamw_multi_({sr.zeros(2), sr.zeros(3)}, {sr.zeros(2), sr.zeros(3)}, {sr.zeros(2), sr.zeros(2)},
                        {sr.zeros(2), sr.zeros(3)}, {lr = 0.1, step = 1}) end)
case("adamw_multi_ state dtypes", "dtypes float32/float32/bfloat16 differ", function()
  local bf = {dtype = "bfloat16"}
  return F.adamw_multi_({sr.zeros(2), sr.zeros(3)}, {sr.zeros(2), sr.zeros(3)}, {sr.zeros(2), sr.zeros(3, bf)},
                        {sr.zeros(2), sr.zeros(3, bf)}, {lr = 0.1, step = 1}) end)
case("AdamW state_dtype", "state_dtype must be", function() return optim.AdamW({sr.zeros(2)}, {state_dtype = "int32"}) end)
case("sumsq_multi of int32", "expected a float32", function() return F.sumsq_multi({sr.zeros(2), sr.zeros(2, i32)}) end)
case("clip_multi_ sumsq", "one element", function() return F.clip_multi_({sr.zeros(2)}, sr.zeros(2), 1.0) end)
case("AdamW without params", "has no params list", function() return optim.AdamW({{lr = 1}}) end)
case("AdamW step with a mismatched grad dtype", "optimizer state m and v must be float32 or bfloat16", function()
  local p = sr.zeros(4, {dtype = "float64"}):requires_grad_()
  p.grad = sr.zeros(4, {dtype = "float64"})
  local opt = optim.AdamW({p}, {lr = 0.1})
  opt.state[p] = {m = sr.zeros(4, {dtype = "float64"}), v = sr.zeros(4), step = 0}
  opt:step()
end)
case("clip_grad_norm_ of int32 grads", "", function()
  local p = sr.zeros(4):requires_grad_()
  p.grad = sr.zeros(4)
  local q = sr.zeros(3, {dtype = "float64"}):requires_grad_()
  q.grad = sr.zeros(3, {dtype = "float64"})
  rawset(q, "x", 1)
end)
cases[#cases] = nil  -- (placeholder removed: clip_grad_norm_ has no misuse that raises)

T.case("every error case raises what it documents", function()
  for _, c in ipairs(cases) do
    local ok, err = pcall(c.fn)
    T.ok(not ok, c.name .. ": raises")
    T.ok(tostring(err):find(c.pattern, 1, true) ~= nil, c.name .. ": message has '" .. c.pattern .. "', got: " .. tostring(err))
  end
end)

T.case("an op failing under a pcall inside a custom backward leaves the pass's references alone", function()
  local x = sr.tensor({1, 2, 3}):requires_grad_()
  local y = sr.no_grad(function() return x * 3 end)
  core.record_custom(function(_, g)
    for _ = 1, 3 do
      local ok = pcall(F.embedding, sr.tensor({7}, i32), sr.zeros(2, 2))
      assert(not ok)
    end
    return g * 3
  end, {}, {x}, {y})
  local t0, s0 = live()
  F.sum(F.exp(y) * 2):backward()
  T.close(x.grad:tolist(), {6 * math.exp(3), 6 * math.exp(6), 6 * math.exp(9)}, 1e-4)
  x.grad = nil
  local t1, s1 = live()
  T.eq(("%d tensors, %d storages"):format(t1, s1), ("%d tensors, %d storages"):format(t0, s0), "nothing left alive")
end)

T.case(("errors leave no tensor, storage or byte alive (%d cases x %d)"):format(#cases, ITERS), function()
  local leaks = {}
  local t0, s0, b0 = live()
  for _, c in ipairs(cases) do
    local t1, s1, b1 = live()
    for _ = 1, ITERS do pcall(c.fn) end
    local t2, s2, b2 = live()
    if t2 ~= t1 or s2 ~= s1 or b2 ~= b1 then
      leaks[#leaks + 1] = ("%s: %+d tensors, %+d storages, %+d bytes after %d calls"):format(c.name, t2 - t1, s2 - s1, b2 - b1, ITERS)
    end
  end
  local t3, s3, b3 = live()
  T.ok(#leaks == 0, "leaks:\n  " .. table.concat(leaks, "\n  "))
  T.eq(("%d tensors, %d storages, %d bytes"):format(t3, s3, b3), ("%d tensors, %d storages, %d bytes"):format(t0, s0, b0),
       "live tensors, storages and bytes back where they started")
end)

T.done()
