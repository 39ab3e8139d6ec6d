-- Agent kernels without a GPU: NVRTC compiles to PTX, compile errors name the user's file and
-- line, the disk cache hits and misses as it should, C++ names resolve, and the CLI reports.
local sr = require "speedrun"
local T = require "speedrun.testing"
local K = require "speedrun.kernel"

local exe = arg[-1]
if not K.compiler() then
  -- CPU-only build: the module says so clearly
  local k, msg = K.compile("jit/kernels/add.cu", {kernels = {}})
  assert(k == nil and msg:find("CUDA backend is not built", 1, true), msg)
  T.skip("CUDA backend not built (NVRTC unavailable): " .. select(2, K.compiler()))
end

local tmp = os.getenv("SPEEDRUN_TEST_TMP") or "/tmp"
local cache = ("%s/kernel-cache-%d-%d"):format(tmp, os.time(), math.random(1, 1 << 30))
os.execute("rm -rf '" .. cache .. "' && mkdir -p '" .. cache .. "'")
local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local ADD = {
  add = "ptr float* y, ptr const float* a, ptr const float* b, int n",
  scale_bf16 = "ptr bf16* y, ptr const bf16* x, float s, int64_t n",
  cpp_fill = "ptr float* y, float v, int n",
}

T.case("a good kernel compiles to PTX without a GPU", function()
  local k, log = K.compile("jit/kernels/add.cu", {kernels = ADD, arch = "compute_90", cache_dir = cache})
  T.ok(k, log)
  T.eq(k.info.kind, "ptx")
  T.eq(k.info.arch, "compute_90")
  T.eq(k.info.file, "jit/kernels/add.cu")
  T.ok(k.info.ptx:find(".entry add(", 1, true), "PTX has the add entry")
  T.ok(k.info.ptx:find(".target sm_90", 1, true), "PTX targets sm_90")
  T.eq(type(k.add), "function")
  T.eq(#k.info.kernels, 3)
  T.ok(tostring(k):find("kernel module jit/kernels/add.cu", 1, true))
end)

T.case("C++ (not extern \"C\") kernels resolve through their lowered names", function()
  local k = assert(K.compile("jit/kernels/add.cu", {kernels = ADD, arch = "compute_90", cache_dir = cache}))
  local byname = {}
  for _, e in ipairs(k.info.kernels) do byname[e.name] = e.lowered end
  T.eq(byname.add, "add")
  T.eq(byname.cpp_fill, "_Z8cpp_fillPffi")
  T.ok(k.info.ptx:find(".entry _Z8cpp_fillPffi(", 1, true))
end)

T.case("a compile error names the .cu file and line", function()
  local k, log = K.compile("jit/kernels/bad_syntax.cu", {kernels = {broken = "ptr float* y, int n"}, arch = "compute_90", cache_dir = cache})
  T.eq(k, nil)
  T.ok(log:find("jit/kernels/bad_syntax.cu:6: error: identifier \"undefined_thing\" is undefined", 1, true), log)
  T.ok(not log:find("bad_syntax.cu(6)", 1, true), "NVRTC's file(line) form is rewritten")
  -- from a source string, errors name opts.name
  local src = "#include \"speedrun_kernel.cuh\"\n\nSR_KERNEL void f(float *y) {\n  y[0] = nope;\n}\n"
  k, log = K.compile(src, {kernels = {f = "ptr float* y"}, name = "recipes/my_op.cu", arch = "compute_90", cache_dir = cache})
  T.eq(k, nil)
  T.ok(log:find("recipes/my_op.cu:4: error", 1, true), log)
end)

T.case("a kernel named in opts.kernels but missing from the source", function()
  local k, log = K.compile("jit/kernels/add.cu", {kernels = {nothere = "int n"}, arch = "compute_90", cache_dir = cache})
  T.eq(k, nil)
  T.ok(log:find("jit/kernels/add.cu: error: no kernel named 'nothere'", 1, true), log)
  T.ok(not log:find("__nv_name_map", 1, true), log)
end)

T.case("a missing file and bad options", function()
  local k, log = K.compile("jit/kernels/missing.cu", {kernels = {}})
  T.eq(k, nil); T.ok(log:find("jit/kernels/missing.cu: cannot open", 1, true), log)
  T.raises(function() K.compile("jit/kernels/add.cu", {kernels = {add = "ptr half* x"}}) end, "kernel 'add': bad signature")
  T.raises(function() K.compile("jit/kernels/add.cu", {kernels = "add"}) end, "opts.kernels must be a table")
  T.raises(function() K.compile("jit/kernels/add.cu", {kernels = {info = ""}}) end, "'info' is reserved")
  k, log = K.compile("jit/kernels/add.cu", {kernels = ADD, arch = "compute_90", options = {"--no-such-flag"}, cache = false})
  T.eq(k, nil); T.ok(log:find("jit/kernels/add.cu", 1, true) and #log > 0, log)
  T.raises(function() local m = assert(K.compile("jit/kernels/add.cu", {kernels = ADD, arch = "compute_90", cache_dir = cache})); return m.nope end,
           "has no kernel 'nope'")
end)

T.case("the disk cache: a hit on the second compile; source, options, headers and target change the key", function()
  local dir = cache .. "/src"
  os.execute("mkdir -p '" .. dir .. "'")
  write(dir .. "/helper.cuh", "#define SCALE 2.0f\n")
  local body = "#include \"speedrun_kernel.cuh\"\n#include \"helper.cuh\"\nSR_KERNEL void k(float *y, int n) {\n  int64_t i = sr_tid();\n  if (i < n) y[i] = SCALE * i;\n}\n"
  write(dir .. "/k.cu", body)
  local opts = {kernels = {k = "ptr float* y, int n"}, arch = "compute_90", cache_dir = cache}
  local a = assert(K.compile(dir .. "/k.cu", opts))
  T.eq(a.info.cache_hit, false)
  T.ok(io.open(a.info.cache_path, "rb"), "the entry is on disk: " .. a.info.cache_path)
  local b = assert(K.compile(dir .. "/k.cu", opts))
  T.eq(b.info.cache_hit, true, "second compile hits")
  T.eq(b.info.key, a.info.key)
  T.eq(b.info.ptx, a.info.ptx, "the cached image is the compiled one")
  T.eq(b.info.kernels[1].lowered, "k")
  -- options
  local c = assert(K.compile(dir .. "/k.cu", {kernels = opts.kernels, arch = "compute_90", cache_dir = cache, defines = {EXTRA = 1}}))
  T.eq(c.info.cache_hit, false); T.ok(c.info.key ~= a.info.key)
  -- target
  local d = assert(K.compile(dir .. "/k.cu", {kernels = opts.kernels, arch = "compute_80", cache_dir = cache}))
  T.eq(d.info.cache_hit, false); T.ok(d.info.key ~= a.info.key)
  -- an included header
  write(dir .. "/helper.cuh", "#define SCALE 3.0f\n")
  local e = assert(K.compile(dir .. "/k.cu", opts))
  T.eq(e.info.cache_hit, false, "editing an included header misses")
  T.ok(e.info.ptx ~= a.info.ptx)
  -- the source
  write(dir .. "/k.cu", body .. "// edited\n")
  local f = assert(K.compile(dir .. "/k.cu", opts))
  T.eq(f.info.cache_hit, false)
  -- cache = false never hits
  local g = assert(K.compile(dir .. "/k.cu", {kernels = opts.kernels, arch = "compute_90", cache_dir = cache, cache = false}))
  T.eq(g.info.cache_hit, false)
  -- a damaged entry is recompiled, not trusted
  local h = assert(K.compile(dir .. "/k.cu", opts))
  T.eq(h.info.cache_hit, true)
  write(h.info.cache_path, "SRK1\nkind ptx\ngarbage")
  local i = assert(K.compile(dir .. "/k.cu", opts))
  T.eq(i.info.cache_hit, false)
  T.eq(i.info.ptx, h.info.ptx)
end)

T.case("the agent header: bf16/fp8 types, reductions, index helpers compile", function()
  local src = [[
#include "speedrun_kernel.cuh"
SR_KERNEL void row_sum(float *out, const bf16 *x, const fp8_e4m3 *q, int C) {
  __shared__ float sh[32];
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    s += sr_to_float(x[(int64_t)blockIdx.x * C + c]) * sr_to_float(q[c]);
  s = sr_block_sum(s, sh);
  float m = sr_block_max(s, sh);
  if (threadIdx.x == 0) out[blockIdx.x] = s + 0.f * m + sr_warp_min(0.f) * sr_lane();
}
SR_KERNEL void copy16(bf16 *y, const bf16 *x, int64_t n) {
  SR_FOR_EACH(i, n / 8) sr_store16(y + 8 * i, sr_load16(x + 8 * i));
}
]]
  local k, log = K.compile(src, {name = "header_test.cu", arch = "compute_90", cache_dir = cache, kernels = {
    row_sum = "ptr float* out, ptr const bf16* x, ptr const fp8_e4m3* q, int C",
    copy16 = "ptr bf16* y, ptr const bf16* x, int64_t n"}})
  T.ok(k, log)
end)

T.case("sm_90 cubin without a GPU, when asked", function()
  local k, log = K.compile("jit/kernels/add.cu", {kernels = ADD, arch = "sm_90", cache_dir = cache, load = false})
  T.ok(k, log)
  T.eq(k.info.kind, "cubin")
  T.eq(k.info.ptx, nil)
  T.ok(k.info.size > 1000)
end)

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

T.case("speedrun kernel compile: ok, errors as FILE:LINE, usage", function()
  local env = "SPEEDRUN_KERNEL_CACHE='" .. cache .. "' "
  local out, rc = sh(env .. ("'%s' kernel compile jit/kernels/add.cu --kernel add --kernel cpp_fill --arch compute_90"):format(exe))
  T.eq(rc, 0, out); T.ok(out:find("jit/kernels/add.cu: ok (ptx for compute_90", 1, true), out)
  T.ok(out:find("kernel cpp_fill -> _Z8cpp_fillPffi", 1, true), out)
  out, rc = sh(env .. ("'%s' kernel compile jit/kernels/bad_syntax.cu --arch compute_90"):format(exe))
  T.eq(rc, 1, out); T.ok(out:find("jit/kernels/bad_syntax.cu:6: error", 1, true), out)
  out, rc = sh(("'%s' kernel"):format(exe))
  T.eq(rc, 2); T.ok(out:find("speedrun kernel check FILE.cu --op NAME", 1, true), out)
  out, rc = sh(("'%s' kernel check jit/kernels/add.cu"):format(exe))
  T.eq(rc, 2); T.ok(out:find("--op NAME is required", 1, true), out)
  out, rc = sh(("'%s' kernel check jit/kernels/add.cu --op nosuch"):format(exe))
  T.eq(rc, 1); T.ok(out:find("unknown op 'nosuch'", 1, true), out)
  out, rc = sh(("'%s' kernel ops"):format(exe))
  T.eq(rc, 0); T.ok(out:find("rms_norm", 1, true) and out:find("ptr T* y, ptr const T* x, int n", 1, true), out)
  out, rc = sh(("'%s' kernel check jit/kernels/add.cu --op add --shapes 12x"):format(exe))
  T.eq(rc, 2, out)
end)

if not sr.cuda_available() then
  T.case("kernel check without a GPU compiles, then says it cannot run (exit 3)", function()
    local out, rc = sh(("SPEEDRUN_KERNEL_CACHE='%s' '%s' kernel check ../docs/examples/gelu.cu --op gelu"):format(cache, exe))
    T.eq(rc, 3, out); T.ok(out:find("cannot run: no usable GPU", 1, true), out)
  end)
end

T.done()
