-- Hostile shapes (issue 14, out-of-bounds memory): a deterministic generator throws sizes,
-- dims, starts, lengths and strides a sandboxed recipe could pass (huge, negative, zero, 2^31,
-- 2^32, 2^48, 2^62, 2^63-1, products overflowing int64 and size_t, NaN, inf, 1e300, floats,
-- strings, tables with a lying __len) at every tensor constructor and view op. Each call must
-- either fail with a clear error (naming the op or "bad argument") or give tensors whose shape
-- is sane (sizes >= 0, product <= 2^48) and whose every element can be written and read back
-- (fill_, tolist, sum) inside its storage; under valgrind (tests/CMakeLists.txt: valgrind_shapes)
-- a read or write outside a storage fails the run. SPEEDRUN_SHAPES_ITERS sets the cases per op.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local ITERS = tonumber(os.getenv("SPEEDRUN_SHAPES_ITERS")) or 1000
local MAXN = 2 ^ 48
local READ_MAX = 4096        -- results up to this many elements are written and read back
local BIG_BYTES = 2 ^ 26     -- valid shapes needing more memory than this are not allocated

-- xorshift64: the same cases on every run
local state = 0x2545F4914F6CDD1D
local function rnd(n)
  state = state ~ (state << 13); state = state ~ (state >> 7); state = state ~ (state << 17)
  return (state >> 1) % n  -- >> is a logical shift: never negative
end
local function pick(t) return t[rnd(#t) + 1] end

local HOSTILE = {
  -1, -2, -3, 2 ^ 31, 1 << 31, (1 << 31) - 1, 1 << 32, (1 << 32) - 1, (1 << 32) + 1, 1 << 47,
  1 << 48, (1 << 48) + 1, 1 << 62, -(1 << 62), math.maxinteger, math.mininteger, 2 ^ 63, -2 ^ 63,
  2 ^ 64, 1e300, -1e300, 0 / 0, 1 / 0, -1 / 0, 2.5, -0.5, 1e-300, 3.0, "3", "-1", "x", true, {},
}
local function size() return rnd(100) < 60 and rnd(5) or pick(HOSTILE) end
local function dim() return rnd(100) < 70 and rnd(7) - 3 or pick(HOSTILE) end
local function shape(max_nd)
  local s = {}
  for i = 1, rnd(max_nd + 1) do s[i] = size() end
  return s
end
local function show(v)
  if type(v) ~= "table" then return tostring(v) end
  if sr.is_tensor(v) then return "tensor" .. show(v.shape) end
  local parts = {}
  for i, x in ipairs(v) do parts[i] = show(x) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- the product a valid shape would have (floats: exact enough to sort the cases), or nil when
-- some size is not a non-negative integer
local function product(s)
  local p, empty = 1.0, false
  for _, v in ipairs(s) do
    if type(v) == "string" then v = tonumber(v) end  -- the bindings take "3" as 3
    if math.type(v) ~= "integer" and not (math.type(v) == "float" and v == math.floor(v)) then return nil end
    if v < 0 then return nil end
    if v == 0 then empty = true else p = p * v end
  end
  return p, empty
end
-- a valid shape too big to allocate here: skipped (a legitimate out-of-memory is not this test's)
local function too_big_to_try(s, esize)
  local p, empty = product(s)
  return p ~= nil and not empty and p <= MAXN and p * esize > BIG_BYTES
end

-- ---------------------------------------------------------------------------------------------
-- checks

local stats = {ok = 0, failed = 0, skipped = 0}

local function count_leaves(l)
  if type(l) ~= "table" then return 1, l end
  local n, all = 0, true
  for _, v in ipairs(l) do
    local k, same = count_leaves(v)
    n = n + k
    all = all and same == 1
  end
  return n, all and 1 or 0
end

local function check_tensor(t, what)
  local p, empty = 1.0, false
  for d, s in ipairs(t.shape) do
    T.ok(math.type(s) == "integer" and s >= 0, what .. ": size " .. tostring(s) .. " of dimension " .. d)
    if s == 0 then empty = true else p = p * s end
  end
  T.ok(p <= MAXN, what .. ": shape " .. show(t.shape) .. " has more than 2^48 elements")
  local n = t:numel()
  T.ok(n == (empty and 0 or math.tointeger(p)), what .. ": numel " .. n .. " for shape " .. show(t.shape))
  if p > READ_MAX or t.dtype:find("float8") then return end  -- p: tolist makes a table per row, even of none
  t:fill_(1)                         -- writes every element through the view
  local leaves, all_one = count_leaves(t:tolist())
  T.ok(leaves == n and (n == 0 or all_one == 1), what .. ": read back " .. leaves .. " of " .. n .. " elements")
  if t.dtype ~= "int32" and n > 0 then T.ok(F.sum(t):item() == n, what .. ": sum of ones") end
end

-- the op names a clear error of each op may start with (ops built on others name those)
local ALSO = {
  reshape = {"view"}, split = {"narrow", "size"}, chunk = {"split", "narrow", "size"}, stack = {"cat", "unsqueeze"},
  copy_ = {"expand"}, linear = {"view", "gemm"}, matmul = {"view", "expand", "gemm"}, full = {"tensor"},
  empty = {"tensor"}, zeros = {"tensor"}, ones = {"tensor"}, randn = {"tensor"}, rand = {"tensor"},
  randint = {"tensor", "copy"}, frombytes = {"tensor"}, arange = {"tensor"},
}

local function check_result(what, names, ok, ...)
  for _, nm in ipairs(ALSO[names[1]] or {}) do names[#names + 1] = nm end
  if not ok then
    local err = tostring((...))
    local clear = err:find("bad argument", 1, true) ~= nil
    for _, nm in ipairs(names) do clear = clear or err:find(nm, 1, true) ~= nil end
    T.ok(clear and not err:find("attempt to", 1, true), what .. ": unclear error: " .. err)
    stats.failed = stats.failed + 1
    return
  end
  stats.ok = stats.ok + 1
  for i = 1, select("#", ...) do
    local r = select(i, ...)
    if type(r) == "table" and not sr.is_tensor(r) then
      for k, x in ipairs(r) do check_tensor(x, what .. " result " .. i .. "." .. k) end
    elseif sr.is_tensor(r) then check_tensor(r, what .. " result " .. i) end
  end
end

-- a small base tensor: arange in a random 0- to 3-d shape, sometimes transposed or expanded
local function base()
  local s, n = {}, 1
  for i = 1, rnd(4) do s[i] = rnd(4) + (rnd(8) == 0 and 0 or 1); n = n * s[i] end
  local x = sr.arange(n, {dtype = pick {"float32", "float64", "bfloat16", "int32"}}):view(s)
  if #s >= 2 and rnd(3) == 0 then x = x:transpose(1, 2) end
  if #s >= 1 and rnd(4) == 0 then x = x:unsqueeze(1):expand(2, table.unpack(x.shape)) end
  return x
end

-- a zero-element tensor with a hostile size beside the zero, or nil where that is refused
local function empty_base()
  local ok, x = pcall(sr.empty, 0, size())
  return ok and x or nil
end

-- ---------------------------------------------------------------------------------------------
-- the ops: name, the words its errors may name, and a case maker returning a function to call

local function shape_args(s)  -- a shape as a table or as separate arguments
  if rnd(2) == 0 then return s end
  return table.unpack(s)
end

local views = {
  {"view", function(x, s) return x:view(shape_args(s)) end},
  {"reshape", function(x, s) return x:reshape(shape_args(s)) end},
  {"expand", function(x, s) return x:expand(shape_args(s)) end},
  {"narrow", function(x) return x:narrow(dim(), size(), size()) end},
  {"unsqueeze", function(x) return x:unsqueeze(dim()) end},
  {"squeeze", function(x) return x:squeeze(dim()) end},
  {"transpose", function(x) return x:transpose(dim(), dim()) end},
  {"permute", function(x) local p = {}; for i = 1, rnd(2) == 0 and x:dim() or rnd(4) do p[i] = dim() end; return x:permute(p) end},
  {"size", function(x) return x:size(dim()) end},
  {"split", function(x) return F.split_views(x, dim(), shape(4)) end},
  {"split", function(x) return F.split(x, size(), dim()) end, true},   -- true: a piece per row (a
  {"chunk", function(x) return F.chunk(x, size(), dim()) end, true},   -- Lua table): small inputs only
  {"cat", function(x) return F.cat({x, rnd(2) == 0 and x or empty_base() or x}, dim()) end},
  {"stack", function(x) return F.stack({x, x}, dim()) end},
  {"copy_", function(x) return x:copy_(x:expand(shape_args(shape(4)))) end},
}

local function constructor(name, esize, fn)
  return {name, function()
    local s = shape(4)
    if too_big_to_try(s, esize) then return end
    return fn(s)
  end}
end

local constructors = {
  constructor("empty", 4, function(s) return sr.empty(shape_args(s)) end),
  constructor("zeros", 4, function(s) return sr.zeros(shape_args(s)) end),
  constructor("ones", 8, function(s) return sr.ones(s, {dtype = "float64"}) end),
  constructor("full", 4, function(s) local a = {table.unpack(s)}; a[#a + 1] = 7; return sr.full(table.unpack(a)) end),
  constructor("randn", 4, function(s) return sr.randn(shape_args(s)) end),
  constructor("rand", 2, function(s) return sr.rand(s, {dtype = "bfloat16"}) end),
  constructor("randint", 4, function(s) return sr.randint(size(), size(), s) end),
  constructor("frombytes", 4, function(s)
    local p = product(s)
    local len = (p and p <= READ_MAX) and math.tointeger(p) * 4 or rnd(64)
    return sr.frombytes(string.rep("\0", len), "float32", s)
  end),
  {"arange", function()
    local a, b, c = size(), size(), size()
    local p = (type(a) == "number" and type(b) == "number" and type(c) == "number" and c ~= 0)
      and math.abs((b - a) / c) or 0
    if p > BIG_BYTES / 4 and p <= MAXN then return end
    return sr.arange(a, b, c)
  end},
  {"tensor", function()  -- nested tables whose __len lies about their length
    local lie = size()
    local inner = setmetatable({1, 2}, {__len = function() return lie end})
    local p = product {lie}
    if p and p > READ_MAX and p <= MAXN then return end
    return sr.tensor({inner, inner})
  end},
}

-- ITERS cases of op; a view op's successful result also goes through one more view op
local function live()
  collectgarbage("collect"); collectgarbage("collect")
  return sr.live_tensors()
end

local function run(op, with_base)
  local name, fn = op[1], op[2]
  local t0, s0 = live()
  for i = 1, ITERS do
    local x = with_base and (rnd(5) == 0 and not op[3] and empty_base() or base()) or nil
    local what = name .. " case " .. i .. (x and " on " .. show(x.shape) or "")
    if os.getenv("SHAPES_DEBUG") then io.stderr:write(what, "\n") end
    local results = table.pack(pcall(fn, x, shape(4)))
    if results[1] and results.n == 1 then stats.skipped = stats.skipped + 1  -- nothing returned: skipped
    else
      check_result(what, {name}, table.unpack(results, 1, results.n))
      -- (not one past READ_MAX elements: a copying op would allocate it for real)
      local r = results[2]
      if with_base and results[1] and sr.is_tensor(r) and product(r.shape) <= READ_MAX then
        local op2 = views[rnd(#views) + 1]
        check_result(what .. " then " .. op2[1], {op2[1]}, pcall(op2[2], results[2], shape(4)))
      end
      if os.getenv("SHAPES_DEBUG") then results, r, x = nil, nil, nil; io.stderr:write(string.format("live %d\n", live())) end
    end
  end
  local t1, s1 = live()
  T.ok(t1 == t0 and s1 == s0, string.format("%s: errors leaked tensors (%d -> %d) or storages (%d -> %d)", name, t0, t1, s0, s1))
end

T.case("every constructor refuses hostile shapes or gives a readable tensor", function()
  for _, op in ipairs(constructors) do run(op, false) end
end)

T.case("every view op refuses hostile sizes and dims or stays inside its storage", function()
  for _, op in ipairs(views) do run(op, true) end
end)

T.case("matmul and linear refuse outputs beyond the limits before allocating", function()
  for i = 1, ITERS do
    local M, N = size(), size()   -- shapes as tables: a non-number is refused, not taken for options
    local oka, a = pcall(sr.empty, {M, 0})
    local okb, b = pcall(sr.empty, {0, N})
    local okw, w = pcall(sr.empty, {N, 0})
    if oka and okb and not too_big_to_try({M, N}, 4 * 8) then  -- (valid but too big to allocate: skipped)
      check_result("matmul case " .. i .. " " .. show {M, N}, {"matmul"}, pcall(F.matmul, a, b))
    end
    if oka and okw and not too_big_to_try({M, N}, 4 * 8) then
      check_result("linear case " .. i .. " " .. show {M, N}, {"linear"}, pcall(F.linear, a, w))
    end
    local B0, B = size(), size()
    local ok3, a3 = pcall(sr.empty, {B0, M, 0})
    if ok3 and okb and not too_big_to_try({B, M, N}, 4 * 8) and not too_big_to_try({B0, M, N}, 4 * 8) then
      check_result("batched matmul case " .. i .. " " .. show {B0, M, B, N}, {"matmul"},
                   pcall(function() return F.matmul(a3, b:expand(B, 0, N)) end))
    end
  end
end)

T.case("hostile shape errors leak nothing", function()
  collectgarbage("collect"); collectgarbage("collect")
  local t0, s0, b0 = sr.live_tensors()
  for _ = 1, ITERS // 10 + 1 do
    pcall(sr.empty, 1 << 62, 4)
    pcall(function() return sr.zeros(3, 4):narrow(2, 2, math.maxinteger) end)
    pcall(function() return sr.zeros(1, 4):expand(1 << 40, 1 << 40, 4) end)
    pcall(F.matmul, sr.empty(1 << 30, 0), sr.empty(0, 1 << 30))
    pcall(F.linear, sr.empty(1 << 30, 0), sr.empty(1 << 30, 0))
    pcall(F.cat, {sr.empty(0, 1 << 47), sr.empty(0, 1 << 47), sr.empty(0, 1 << 47)}, 2)
  end
  collectgarbage("collect"); collectgarbage("collect")
  local t1, s1, b1 = sr.live_tensors()
  T.ok(t1 == t0 and s1 == s0 and b1 == b0, string.format("live tensors %d -> %d, storages %d -> %d", t0, t1, s0, s1))
  print(string.format("shapes fuzz: %d calls succeeded, %d refused, %d skipped (valid but too big to allocate)",
                      stats.ok, stats.failed, stats.skipped))
end)

T.done()
