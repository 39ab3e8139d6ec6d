-- Agent kernels: signature parsing and the argument checks of a launch (no GPU needed: the
-- checks run before anything touches the device).
local sr = require "speedrun"
local T = require "speedrun.testing"
local K = require "speedrun.kernel"

T.case("signatures parse into typed parameters", function()
  local s = K.signature("ptr float* y, ptr const bf16* x, int n, float eps, int64_t stride, ptr void* any, double d")
  T.eq(#s, 7)
  T.eq(s[1].kind, "ptr"); T.eq(s[1].dtype, "float32"); T.eq(s[1].const, false); T.eq(s[1].name, "y")
  T.eq(s[2].dtype, "bfloat16"); T.eq(s[2].const, true); T.eq(s[2].ctype, "const bf16*")
  T.eq(s[3].kind, "int32"); T.eq(s[3].name, "n")
  T.eq(s[4].kind, "float32"); T.eq(s[5].kind, "int64")
  T.eq(s[6].dtype, "any"); T.eq(s[7].kind, "float64")
  -- C spellings, no "ptr" keyword, no names, qualifiers
  s = K.signature("const float * __restrict__ x, __nv_bfloat16 *y, unsigned int, size_t, fp8_e4m3* q, const int* idx")
  T.eq(#s, 6)
  T.eq(s[1].kind, "ptr"); T.eq(s[1].const, true); T.eq(s[1].name, "x")
  T.eq(s[2].dtype, "bfloat16"); T.eq(s[3].kind, "uint32"); T.eq(s[3].name, nil)
  T.eq(s[4].kind, "uint64"); T.eq(s[5].dtype, "float8_e4m3"); T.eq(s[6].dtype, "int32")
  T.eq(#K.signature(""), 0)
end)

T.case("bad signatures are errors that say what is wrong", function()
  T.raises(function() K.signature("ptr half* x") end, "unknown pointer element type 'half'")
  T.raises(function() K.signature("int n, char c") end, "parameter 2 ('char c')")
  T.raises(function() K.signature("ptr float** x") end, "pointers to pointers")
  T.raises(function() K.signature("int n, int n") end, "the name 'n' is used twice")
  T.raises(function() K.signature("float x y") end, "cannot read")
  T.raises(function() K.signature("int n,") end, "no type")
  T.raises(function() K.signature("int (n)") end, "unexpected '('")
end)

local SIG = "ptr float* y, ptr const bf16* x, int n, float eps"

T.case("arguments: count, types, dtypes, contiguity, device", function()
  local y = sr.zeros(4, 4)
  local x = sr.zeros({4, 4}, {dtype = "bfloat16"})
  T.ok(K.check_args(SIG, {y, x, 16, 1e-6}, {allow_cpu = true}))
  T.ok(K.check_args(SIG, {y, x, 16.0, 1}, {allow_cpu = true}), "integral floats convert to int")
  T.raises(function() K.check_args(SIG, {y, x, 16}, {allow_cpu = true}) end,
           "expected 4 arguments (ptr float* y, ptr const bf16* x, int n, float eps), got 3")
  T.raises(function() K.check_args(SIG, {y, 3, 16, 1.0}, {allow_cpu = true}) end,
           "args[2] 'x' (ptr const bf16*): expected a tensor, got number")
  T.raises(function() K.check_args(SIG, {y, y, 16, 1.0}, {allow_cpu = true}) end,
           "args[2] 'x' (ptr const bf16*): expected a bfloat16 tensor, got float32")
  T.raises(function() K.check_args(SIG, {y:transpose(1, 2), x, 16, 1.0}, {allow_cpu = true}) end,
           "args[1] 'y' (ptr float*): the tensor is not contiguous")
  T.raises(function() K.check_args(SIG, {y, x, 1.5, 1.0}, {allow_cpu = true}) end,
           "args[3] 'n' (int): expected an integer, got 1.5")
  T.raises(function() K.check_args(SIG, {y, x, "16", 1.0}, {allow_cpu = true}) end,
           "args[3] 'n' (int): expected an integer, got string")
  T.raises(function() K.check_args(SIG, {y, x, 1 << 40, 1.0}, {allow_cpu = true}) end,
           "does not fit in 32 bits")
  T.raises(function() K.check_args(SIG, {y, x, 16, true}, {allow_cpu = true}) end,
           "args[4] 'eps' (float): expected a number, got boolean")
  T.raises(function() K.check_args("uint64_t n", {-1}, {allow_cpu = true}) end, "is negative")
  T.raises(function() K.check_args(SIG, {y, x, 16, 1.0}) end,
           "args[1] 'y' (ptr float*): expected a cuda tensor, got a cpu tensor")
  T.raises(function() K.check_args("int", {2, 3}) end, "expected 1 argument (int), got 2")
  T.ok(K.check_args("ptr void* any", {x}, {allow_cpu = true}), "void* takes any dtype")
  T.ok(K.check_args("ptr const float* x", {y:narrow(1, 2, 2)}, {allow_cpu = true}), "a contiguous view is fine")
end)

T.case("a launcher checks its table and arguments before the device", function()
  if not K.compiler() then return end   -- CPU-only build: nothing to launch
  local k, log = K.compile("jit/kernels/add.cu", {kernels = {add = "ptr float* y, ptr const float* a, ptr const float* b, int n"},
    arch = "compute_90", load = false, cache_dir = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/kernel-cache-args"})
  T.ok(k, log)
  local a, b, y = sr.ones(8), sr.ones(8), sr.zeros(8)
  T.raises(function() k.add(1) end, "bad argument #1 to 'add' (expected a table {grid=, block=, shared=, args={...}}, got number)")
  T.raises(function() k.add {block = 32, args = {y, a, b, 8}} end, "bad argument #1 to 'add' ('grid' is required")
  T.raises(function() k.add {grid = 1, block = 2048, args = {y, a, b, 8}} end, "more than 1024 threads")
  T.raises(function() k.add {grid = 0, block = 32, args = {y, a, b, 8}} end, "'grid' x is 0")
  T.raises(function() k.add {grid = {1, 1, 1, 1}, block = 32, args = {y, a, b, 8}} end, "1 to 3 entries")
  T.raises(function() k.add {grid = 1, block = 32, shared = -1, args = {y, a, b, 8}} end, "'shared' must be")
  T.raises(function() k.add {grid = 1, block = 32, args = {y, a, 8}} end, "bad argument #1 to 'add' (expected 4 arguments")
  T.raises(function() k.add {grid = 1, block = 32, args = {sr.ones(8, {dtype = "float64"}), a, b, 8}} end,
           "args[1] 'y' (ptr float*): expected a float32 tensor, got float64")
  T.raises(function() k.add {grid = 1, block = 32, args = {y, a, b, 8}} end, "expected a cuda tensor, got a cpu tensor")
end)

T.case("a source or path with a NUL byte is an argument error (C would read up to the NUL)", function()
  T.raises(function() K.compile("jit/kernels/add.cu\0.txt", {kernels = {}}) end, "bad argument #1 to 'core_compile' (source or path with a NUL byte)")
  T.raises(function() K.compile("extern \"C\" __global__ void k() {}\0", {kernels = {}}) end, "NUL byte")
end)

T.done()
