-- Bad input gets a clear error naming the op, the argument and the shapes; out-of-range
-- indices are errors, not memory corruption; NaN is never turned into a number.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

T.case("shape mismatches name the op, argument and shapes", function()
  T.raises(function() return F.matmul(sr.zeros(3, 4), sr.zeros(5, 6)) end, "matmul: bad argument #2 (shape [5,6] does not match [3,4]")
  T.raises(function() return sr.zeros(2, 3) + sr.zeros(4) end, "add: shapes [2,3] and [4] cannot be broadcast together")
  T.raises(function() return F.linear(sr.zeros(2, 3), sr.zeros(4, 5)) end, "linear: bad argument #2 (weight shape [4,5] does not match input [2,3]")
  T.raises(function() return F.rms_norm(sr.zeros(2, 3), sr.zeros(4)) end, "rms_norm: bad argument #2 (shape [4], expected [3])")
  T.raises(function() return F.cross_entropy(sr.zeros(2, 5), sr.zeros(3, {dtype = "int32"})) end, "cross_entropy: bad argument #2 (targets shape [3] does not match logits [2,5]")
  T.raises(function() return F.scaled_dot_product_attention(sr.zeros(1, 2, 3, 4), sr.zeros(1, 2, 3, 4), sr.zeros(2, 3, 4)) end, "scaled_dot_product_attention: bad argument #3")
  T.raises(function() return F.rotary(sr.zeros(1, 2, 3, 5), sr.zeros(2, 2), sr.zeros(2, 2)) end, "rotary: bad argument #1 (expected x [B, T, H, D] with D even, got [1,2,3,5])")
  T.raises(function() return F.rotary(sr.zeros(1, 2, 3, 4), sr.zeros(3, 2), sr.zeros(2, 2)) end, "rotary: bad argument #2 (cos and sin need T*D/2 = 4 elements for x [1,2,3,4], got [3,2])")
  T.raises(function() return F.rotary(sr.zeros(1, 2, 3, 4), sr.zeros(2, 2):requires_grad_(), sr.zeros(2, 2)) end, "rotary: bad argument #2 (the tables take no gradient")
  T.raises(function() return F.flex_attention(sr.zeros(1, 2, 3, 4), sr.zeros(1, 2, 3, 4), sr.zeros(2, 3, 4), {data = sr.zeros(1, 1)}) end, "flex_attention: bad argument #3")
  T.raises(function() return F.to_fp8(sr.zeros(2), "int32", 1) end, "to_fp8: bad argument #2 (expected \"float8_e4m3fn\" or \"float8_e5m2\", got int32)")
  T.raises(function() return F.scaled_mm(F.to_fp8(sr.zeros(2, 16), "e4m3", 1), F.to_fp8(sr.zeros(16, 16), "e4m3", 1)) end, "scaled_mm: bad argument #2 (b must be column-major [K,N]")
  T.raises(function() return sr.zeros(2, 3):view(4, 2) end, "view: shape [4,2] is invalid for a tensor of shape [2,3]")
  T.raises(function() return F.cat({sr.zeros(2, 3), sr.zeros(3, 3)}, 2) end, "cat: bad argument #2 (shape [3,3] does not match [2,3]")
  T.raises(function() return sr.zeros(2, 3):narrow(2, 3, 2) end, "narrow: range [2, 4) out of bounds for dimension 2 of size 3")
  T.raises(function() return sr.zeros(2, 3):sum(3) end, "dimension 3 out of range for a 2-d tensor")
end)

T.case("dtype and argument errors", function()
  T.raises(function() return F.matmul(sr.zeros(2, 2), sr.zeros(2, 2, {dtype = "float64"})) end, "matmul: bad argument #2 (dtype float64 does not match float32)")
  T.raises(function() return F.embedding(sr.zeros(3), sr.zeros(4, 2)) end, "embedding: bad argument #2 (indices must be int32, got float32)")
  T.raises(function() return F.exp(sr.zeros(2, {dtype = "int32"})) end, "exp: bad argument #1 (expected a float32, float64 or bfloat16 tensor, got int32)")
  T.raises(function() return sr.zeros(2, {dtype = "float16"}) end, "bad option dtype 'float16'")
  T.raises(function() return sr.zeros(2):to("tpu") end, "unknown device 'tpu'")
  T.raises(function() return F.gelu(sr.zeros(2), "fast") end, "approximate must be 'none' or 'tanh'")
  T.raises(function() return F.matmul(sr.zeros(2), "x") end, "bad argument #2 to 'matmul'")
  T.raises(function() return sr.zeros(3):item() end, "calling 'item' on bad self (the tensor has 3 elements")
  T.raises(function() return sr.tensor({{1, 2}, {3}}) end, "ragged nested table")
  T.raises(function() return F.cumsum(sr.tensor(3), 1) end, "cumsum: bad argument #1 (needs at least 1 dimension)")
  T.raises(function() return F.cumsum(sr.zeros(2, 3), 3) end, "bad argument #2 to 'cumsum'")
  T.raises(function() return F.argsort(F.to_fp8(sr.zeros(4), "e4m3", 1), 1) end,
           "argsort: bad argument #1 (expected a float32, float64, bfloat16 or int32 tensor, got float8_e4m3)")
  T.raises(function() return F.argsort(sr.zeros(4), 1, "down") end, "bad argument #3 to 'argsort'")
end)

-- One argument-error style for every binding library, as Lua's own libraries write it
-- (luaL_argerror): "bad argument #N to 'fname' (message)".
T.case("argument errors: bad argument #N to 'fname' (...) in every binding library", function()
  local function style(fn, expected)
    local ok, err = pcall(fn)
    T.ok(not ok, expected .. ": raises")
    err = tostring(err):gsub("^[^:]*:%d+: ", "")  -- the caller's position
    T.eq(err, expected)
  end
  -- speedrun.core: tensors, factories, F
  style(function() return F.matmul(sr.zeros(2), "x") end, "bad argument #2 to 'matmul' (speedrun.Tensor expected, got string)")
  style(function() return F.add(1, 2) end, "bad argument #1 to 'add' (one of the two arguments must be a tensor)")
  style(function() return sr.zeros(2, {dtype = "float16"}) end,
        "bad argument #2 to 'zeros' (bad option dtype 'float16' (float32, float64, bfloat16, int32))")
  style(function() return sr.zeros(2, {dtype = "int32", requires_grad = true}) end,
        "bad argument #2 to 'zeros' (option requires_grad needs a float dtype, not int32)")
  style(function() return sr.tensor({{1, 2}, {3}}) end, "bad argument #1 to 'tensor' (ragged nested table (dimension 2 should have 2 entries))")
  style(function() return sr.zeros(2, 3):sum(3) end, "bad argument #1 to 'sum' (dimension 3 out of range for a 2-d tensor)")
  style(function() return F.adamw_(sr.zeros(4), sr.zeros(4), sr.zeros(4), sr.zeros(4), {step = 1}) end,
        "bad argument #5 to 'adamw_' (option 'lr' is required)")
  -- speedrun.data and speedrun.tokenizer
  local data = require "speedrun.data"
  style(function() return data.loader{files = "x", mode = "shuffle", T = 4} end,
        "bad argument #1 to 'loader' (bad field 'mode' ('shuffle': bt, seq or global))")
  style(function() return data.loader{files = "x", T = "four"} end, "bad argument #1 to 'loader' (field 'T' must be an integer, got string)")
  -- speedrun.json and speedrun.harness_core
  local json, hc = require "speedrun.json", require "speedrun.harness_core"
  local process = require "speedrun.process"
  local deep = {}
  for _ = 1, 70 do deep = {deep} end
  style(function() return json.encode(deep) end, "bad argument #1 to 'encode' (nesting deeper than 64 (a cycle?))")
  style(function() return process.spawn{argv = {}} end, "bad argument #1 to 'spawn' (field 'argv' is empty)")
  style(function() return process.spawn{argv = {"/bin/true"}, hide = {"rel"}} end,
        "bad argument #1 to 'spawn' (field 'hide': entry 1 must be an absolute path)")
  style(function() return process.spawn{argv = {"/bin/true"}, hide = "x"} end,
        "bad argument #1 to 'spawn' (field 'hide' must be a list of folders, got string)")
  style(function() return hc.causal_diff(sr.zeros(2, 3), sr.zeros(2, 3), 1, 1) end,
        "bad argument #1 to 'causal_diff' (want [B, T, V] float logits)")
  -- speedrun.stats
  local stats = require "speedrun.stats"
  style(function() return stats.ttest_less({1, "x", 3}, 0) end, "bad argument #1 to 'ttest_less' (entry 2 is a string, not a number)")
end)

T.case("out-of-range indices are errors", function()
  local w = sr.zeros(5, 2)
  T.raises(function() return F.embedding(sr.tensor({1, 5}, {dtype = "int32"}), w) end, "out of range")
  T.raises(function() return F.embedding(sr.tensor({-1}, {dtype = "int32"}), w) end, "out of range")
  T.raises(function() return F.cross_entropy(sr.zeros(2, 4), sr.tensor({0, 4}, {dtype = "int32"})) end, "out of range")
  T.raises(function() return F.cross_entropy(sr.zeros(2, 4), sr.tensor({0, -3}, {dtype = "int32"}), {ignore_index = -1}) end, "out of range")
end)

T.case("NaN is never silently turned into a number", function()
  local nan = sr.tensor({0 / 0, 1})
  T.raises(function() return nan:to("int32") end, "cannot be stored as int32")
  local m = F.maximum(nan, sr.tensor({5, 5})):tolist()
  T.ok(m[1] ~= m[1], "maximum propagates NaN")
  local mx = F.max(nan):item()
  T.ok(mx ~= mx, "max propagates NaN")
  local s = F.softmax(nan):tolist()
  T.ok(s[1] ~= s[1] and s[2] ~= s[2], "softmax of a NaN row is NaN")
  local ce = F.cross_entropy(sr.tensor({{0 / 0, 1}}), sr.tensor({1}, {dtype = "int32"})):item()
  T.ok(ce ~= ce, "cross_entropy of NaN logits is NaN")
end)

T.case("CUDA absent or unusable: a clear message", function()
  if sr.cuda_available() then return end
  T.raises(function() return sr.zeros(2, {device = "cuda"}) end, "cuda:")
end)

T.done()
