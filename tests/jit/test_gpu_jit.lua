-- Agent kernels on the GPU: launches against the CPU reference, ordering with built-in ops,
-- CUDA-graph capture, a custom autograd op made of kernels, faults reported as cuda_fault
-- naming the kernel (never success), and `speedrun kernel check` on the example kernels.
local sr = require "speedrun"
local T = require "speedrun.testing"
local K = require "speedrun.kernel"
local F = sr.F

if not sr.cuda_available() then T.skip("no usable GPU") end
if not K.compiler() then T.skip("CUDA backend not built") end

local exe = arg[-1]
local tmp = os.getenv("SPEEDRUN_TEST_TMP") or "/tmp"
os.execute("mkdir -p '" .. tmp .. "'")
local cache = tmp .. "/kernel-cache-gpu"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

local ADD = {
  add = "ptr float* y, ptr const float* a, ptr const float* b, int n",
  scale_bf16 = "ptr bf16* y, ptr const bf16* x, float s, int64_t n",
  index2d = "ptr float* y, ptr const float* x, int rows, int cols",
  cpp_fill = "ptr float* y, float v, int n",
}
local k = assert(K.compile("jit/kernels/add.cu", {kernels = ADD, cache_dir = cache}))

T.case("a cubin for this GPU, loaded", function()
  T.eq(k.info.kind, "cubin")
  T.ok(k.info.arch:match("^sm_%d+$"), k.info.arch)
  T.eq(k.info.loaded, true)
  io.stdout:write(("compiled for %s in %.1f ms (cache hit: %s)\n"):format(k.info.arch, k.info.compile_ms, tostring(k.info.cache_hit)))
end)

T.case("launches match the CPU reference (f32, bf16, 2-D grid, C++ name)", function()
  for _, n in ipairs {1, 1000, 1 << 20} do
    local a, b = sr.randn(n), sr.randn(n)
    local y = sr.empty({n}, {device = "cuda"})
    k.add {grid = (n + 255) // 256, block = 256, args = {y, a:cuda(), b:cuda(), n}}
    T.ok(T.rel_err(y, F.add(a, b)) < 1e-6, "add n=" .. n)
  end
  local x = sr.randn(4096, {dtype = "bfloat16"}):cuda()
  local y = sr.empty({4096}, {dtype = "bfloat16", device = "cuda"})
  k.scale_bf16 {grid = 8, block = 128, args = {y, x, 0.5, 4096}}
  T.close(y:float(), F.mul(x:float(), 0.5), 0, "bf16 scale by 0.5 is exact")
  local rows, cols = 37, 53
  local xin = sr.randn(rows, cols)
  local out = sr.empty({rows, cols}, {device = "cuda"})
  k.index2d {grid = {(cols + 15) // 16, (rows + 15) // 16}, block = {16, 16}, args = {out, xin:cuda(), rows, cols}}
  local want = F.add(F.add(xin, F.mul(sr.arange(0, rows):float():view(rows, 1), 1000)), sr.arange(0, cols):float():view(1, cols))
  T.ok(T.rel_err(out, want) < 1e-6)
  local f = sr.zeros({100}, {device = "cuda"})
  k.cpp_fill {grid = 1, block = 128, args = {f, 2.5, 100}}
  T.close(f, sr.full({100}, 2.5), 0)
end)

T.case("ordered with built-in ops on the engine's stream, no explicit sync", function()
  local n = 1 << 22
  local a = sr.randn(n):cuda()
  for _ = 1, 3 do
    local b = F.mul(a, 2)                                   -- built-in
    local y = sr.empty({n}, {device = "cuda"})
    k.add {grid = n // 256, block = 256, args = {y, b, a, n}}  -- agent, reads b
    local z = F.sub(y, F.mul(a, 3))                           -- built-in, reads y
    T.ok(F.max(F.abs(z)):item() < 1e-5)
  end
end)

T.case("captured into a CUDA graph with built-in ops and replayed", function()
  local n = 4096
  local a, b = sr.zeros({n}, {device = "cuda"}), sr.zeros({n}, {device = "cuda"})
  local y, z = sr.zeros({n}, {device = "cuda"}), sr.zeros({n}, {device = "cuda"})
  local g = require("speedrun.cuda").graph(function()
    k.add {grid = n // 256, block = 256, args = {y, a, b, n}}
    z:copy_(F.mul(y, 10))
  end)
  T.ok(g.captured, "captured: " .. tostring(g.reason))
  local av, bv = sr.randn(n), sr.randn(n)
  a:copy_(av); b:copy_(bv)
  g:replay()
  T.ok(T.rel_err(z, F.mul(F.add(av, bv), 10)) < 1e-6, "replay sees new inputs")
  a:copy_(bv)
  g:replay()
  T.ok(T.rel_err(z, F.mul(F.add(bv, bv), 10)) < 1e-6, "a second replay")
  g:free()
end)

local R = assert(K.compile("jit/kernels/relu2.cu", {cache_dir = cache, kernels = {
  relu2_fwd = "ptr float* y, ptr const float* x, int n",
  relu2_bwd = "ptr float* dx, ptr const float* dy, ptr const float* x, int n",
  relu2_fwd_bf16 = "ptr bf16* y, ptr const bf16* x, int n",
  relu2_bwd_bf16 = "ptr bf16* dx, ptr const bf16* dy, ptr const bf16* x, int n"}}))

local relu2 = K.op {
  name = "relu2_fused",
  forward = function(ctx, x)
    x = x:contiguous()
    ctx.x = x
    local y = sr.empty(x.shape, {dtype = x.dtype, device = "cuda"})
    local n = x:numel()
    local kf = x.dtype == "bfloat16" and R.relu2_fwd_bf16 or R.relu2_fwd
    kf {grid = (n + 255) // 256, block = 256, args = {y, x, n}}
    return y
  end,
  backward = function(ctx, dy)
    local x = ctx.x
    local dx = sr.empty(x.shape, {dtype = x.dtype, device = "cuda"})
    local n = x:numel()
    local kb = x.dtype == "bfloat16" and R.relu2_bwd_bf16 or R.relu2_bwd
    kb {grid = (n + 255) // 256, block = 256, args = {dx, dy:contiguous(), x, n}}
    return dx
  end,
  reference = function(x) return F.relu2(x) end,
}

T.case("a custom autograd op made of kernels matches its reference (values and gradients)", function()
  for _, dt in ipairs {"float32", "bfloat16"} do
    local x = sr.randn({64, 96}):to("cuda", dt)
    x.requires_grad = true
    local ok, rep = K.compare(function(t) return F.mul(relu2(t), 3) end, function(t) return F.mul(F.relu2(t), 3) end, {x})
    T.ok(ok, ("%s: out err %g, grad err %s (tol %g)"):format(dt, rep.out, tostring(rep.grads[1]), rep.tol))
  end
  T.ok(K.ops.relu2_fused ~= nil, "registered in K.ops")
  -- on the CPU the reference runs (micro scale), with autograd through F
  local xc = sr.randn({5}, {requires_grad = true})
  F.sum(relu2(xc)):backward()
  T.ok(T.rel_err(xc.grad, F.mul(F.relu(xc), 2)) < 1e-6)
end)

-- round 19 (docs/harness.md): inside eval under score (the eval guard on) a launch is refused, and
-- K.op runs its reference instead: the same values, no attempt counted
T.case("inside a guarded eval: a raw launch is rejected, a K.op runs its reference", function()
  local H = require "speedrun.harness_core"
  local x = sr.randn({64, 96}):to("cuda")
  local want = F.relu2(x):to("cpu")
  local y = sr.empty(x.shape, {dtype = "float32", device = "cuda"})
  H.eval_guard(true)
  T.ok(K.eval_refuses_kernels(), "the flag inside the guard")
  local got = sr.no_grad(function() return relu2(x) end)
  local ok, err = pcall(R.relu2_fwd, {grid = 24, block = 256, args = {y, x, x:numel()}})
  local hits, first = H.eval_guard(false)
  T.ok(not K.eval_refuses_kernels(), "the flag outside")
  T.ok(T.rel_err(got:to("cpu"), want) < 1e-6, "the reference's values")
  T.ok(not ok and tostring(err):find("agent kernel's launch", 1, true), tostring(err))
  T.eq(hits, 1, "one attempt: the raw launch (" .. tostring(first) .. ")")
end)

T.case("a small model trains through the fused op", function()
  sr.manual_seed(3)
  local w = sr.randn({32, 32}):cuda()
  w = F.mul(w, 0.2):detach(); w.requires_grad = true
  local x = sr.randn({16, 32}):cuda()
  local target = sr.randn({16, 32}):cuda()
  local first, last
  for step = 1, 30 do
    local h = relu2(F.matmul(x, w))
    local loss = F.mean(F.square(F.sub(h, target)))
    if step == 1 then first = loss:item() end
    last = loss:item()
    w.grad = nil
    loss:backward()
    sr.no_grad(function() w:sub_(F.mul(w.grad, 0.1)) end)
  end
  T.ok(last < first * 0.9, ("loss fell: %g -> %g"):format(first, last))
end)

T.case("timing with CUDA events", function()
  local n = 1 << 20
  local a, b, y = sr.randn(n):cuda(), sr.randn(n):cuda(), sr.empty({n}, {device = "cuda"})
  local med, all = K.time(function() k.add {grid = n // 256, block = 256, args = {y, a, b, n}} end, {reps = 20})
  T.ok(med > 0 and med < 10, "median ms " .. med)
  T.eq(#all, 20)
end)

-- faults: in a child process, since a fault leaves the CUDA context unusable
local function child(name, body, env)
  local path = tmp .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write("local K = require 'speedrun.kernel'\nlocal sr = speedrun\n",
          "local k = assert(K.compile('jit/kernels/fault.cu', {cache_dir = '", cache, "', kernels = {oob = 'ptr float* y, int n', trap_if_negative = 'ptr const float* x, int n'}}))\n",
          body, "\n")
  f:close()
  return sh((env or "") .. (" '%s' run '%s'"):format(exe, path))
end

T.case("a faulting kernel: the next sync fails and the process ends as cuda_fault naming it", function()
  local record = tmp .. "/kernel-record.txt"
  os.remove(record)
  local out, rc = child("fault1.lua",
    "local y = sr.zeros({256}, {device = 'cuda'})\nk.oob{grid = 1, block = 256, args = {y, 256}}\nprint(y:sum():item())\nprint('NOT REACHED')",
    "SPEEDRUN_KERNEL_RECORD='" .. record .. "'")
  T.eq(rc, K.EXIT_CUDA_FAULT, out)
  T.ok(out:find("cuda_fault: kernel=oob file=jit/kernels/fault.cu launch=1", 1, true), out)
  T.ok(out:find("illegal", 1, true) or out:find("Illegal", 1, true), out)
  T.ok(not out:find("NOT REACHED", 1, true), out)
  local rf = assert(io.open(record, "rb")):read("a")
  T.ok(rf:find("kernel=oob\n", 1, true) and rf:find("fault=cuda_fault: kernel=oob", 1, true), rf)
end)

T.case("a fault never synchronized is still not success", function()
  local out, rc = child("fault2.lua", "local y = sr.zeros({256}, {device = 'cuda'})\nk.oob{grid = 1, block = 256, args = {y, 256}}\nprint('script ended')")
  T.ok(out:find("script ended", 1, true), out)
  T.eq(rc, K.EXIT_CUDA_FAULT, out)
  T.ok(out:find("cuda_fault: kernel=oob", 1, true), out)
end)

T.case("K.fault() names the kernel for a harness; SR_ASSERT traps are faults", function()
  local out, rc = child("fault3.lua", [[
local x = sr.tensor({1, 2, -3, 4}):cuda()
k.trap_if_negative{grid = 1, block = 32, args = {x, 4}}
local msg, rec = K.fault()
print("FAULT", msg)
print("RECORD", rec.kernel, rec.launches, rec.block[1])
os.exit(0)]])
  T.ok(out:find("FAULT\tcuda_fault: kernel=trap_if_negative", 1, true), out)
  T.ok(out:find("RECORD\ttrap_if_negative\t1\t32", 1, true), out)
  T.eq(rc, K.EXIT_CUDA_FAULT, "os.exit(0) after a fault still exits as a fault: " .. out)
end)

T.case("SPEEDRUN_KERNEL_SYNC=1 raises at the faulting launch", function()
  local out, rc = child("fault4.lua", "local y = sr.zeros({256}, {device = 'cuda'})\nlocal ok, err = pcall(k.oob, {grid = 1, block = 256, args = {y, 256}})\nprint('PCALL', ok, err)",
    "SPEEDRUN_KERNEL_SYNC=1")
  T.ok(out:find("PCALL\tfalse\t", 1, true) and out:find("kernel 'oob': cuda_fault: kernel=oob", 1, true), out)
  T.eq(rc, K.EXIT_CUDA_FAULT, out)
end)

T.case("speedrun kernel check on the example kernels", function()
  local env = "SPEEDRUN_KERNEL_CACHE='" .. cache .. "' "
  local runs = {
    "../docs/examples/gelu.cu --op gelu",
    "../docs/examples/gelu.cu --op gelu --kernel gelu_bf16 --dtype bfloat16",
    "../docs/examples/rms_norm.cu --op rms_norm",
    "../docs/examples/rms_norm.cu --op rms_norm --kernel rms_norm_bf16 --dtype bfloat16 --shapes 4x1000,512x4096",
  }
  for _, r in ipairs(runs) do
    local out, rc = sh(env .. ("'%s' kernel check %s"):format(exe, r))
    io.stdout:write(out)
    T.eq(rc, 0, out)
    T.ok(out:find("PASS: all", 1, true), out)
  end
  -- a wrong kernel fails the check (gelu checked as relu)
  local out, rc = sh(env .. ("'%s' kernel check ../docs/examples/gelu.cu --op relu --kernel gelu --no-time"):format(exe))
  T.eq(rc, 1, out); T.ok(out:find("FAIL", 1, true), out)
end)

T.done()
