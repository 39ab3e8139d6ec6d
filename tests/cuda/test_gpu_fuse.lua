-- test_gpu_fuse.lua: the step compiler on cuda (docs/cuda.md "The step compiler"). Every generated
-- kernel against the unfused kernels: every unary function and its backward, every binary
-- function, where, fill and casts, in f32 and bf16 (f64 groups are refused on cuda and run
-- unfused), contiguous (8-wide path, odd sizes) and strided/broadcast operands (strided path);
-- fused results must equal the unfused ones bit for bit, or within one rounding of their dtype
-- where the compiler may contract differently (counted and printed); the loss kernel (softcaps into
-- an in-place cross-entropy, the gradient's chain run ahead). Then whole steps: records 1, 5 and 9
-- (micro) fused vs unfused eagerly in lockstep, and `speedrun train` with the harness's
-- fused CUDA graph against SPEEDRUN_FUSE=0. Skips (exit 77) without a usable GPU.
local sr = speedrun
local T = require "speedrun.testing"
local cuda = require "speedrun.cuda"
local fuse = require "speedrun.fuse"
local core = require "speedrun.core"
local util = require "speedrun.util"
local json = require "speedrun.json"
local H = require "speedrun.harness_core"
local F = sr.F

local ok, why = cuda.available()
if not ok then T.skip("no usable GPU: " .. tostring(why)) end

local exact, near = 0, 0

local function plan_of(step)
  local plan = T.fuse_plan(step)
  local off, err = plan:prepare()
  T.eq(off, 0, "every group's kernel builds: " .. tostring(err))
  return plan
end

-- fused vs unfused: bit-equal, or within one rounding of the dtype
local function compare(got, want, msg)
  local g, w = got:to("cpu"):to("float64"), want:to("cpu"):to("float64")
  local d = (g - w):abs()
  local nanfix = F.where(F.ne(w, w), 0, d)  -- NaN in both: equal
  local maxd = nanfix:max():item()
  if maxd == 0 then exact = exact + 1 return end
  local tol = (want.dtype == "bfloat16" and 2 ^ -8 or 2 ^ -22) * math.max(1, w:abs():max():item())
  near = near + 1
  T.ok(maxd <= tol, ("%s: fused differs from unfused by %.3g (tolerance %.3g)"):format(msg, maxd, tol))
end

local function check_fused(step, msg, want_groups)
  local plan = plan_of(step)
  local want = step()
  local got = fuse.run(plan, step)
  local groups, w = fuse.last()
  T.eq(w, nil, msg .. ": ran as planned")
  if want_groups then T.ok(groups >= want_groups, msg .. ": groups fused " .. groups .. "\n" .. plan:dump()) end
  for i = 1, #want do compare(got[i], want[i], msg .. " result " .. i) end
  return plan
end

local function positive(t) return F.add(F.abs(t), 0.5) end

T.case("every unary function and its backward, f32 and bf16, contiguous and odd sizes", function()
  for _, dt in ipairs {"float32", "bfloat16"} do
    for _, n in ipairs {4096, 1237} do
      for _, fn in ipairs(core.op_names.unary) do
        local base = sr.randn({n}):to("cuda", dt)
        check_fused(function()
          local v = (fn == "log" or fn == "sqrt" or fn == "rsqrt") and positive(base) or base
          local w = v:detach():requires_grad_()
          local y = F[fn](F.mul(w, 0.75))
          local z = F.cast(y, dt == "float32" and "bfloat16" or "float32")
          F.sum(F.mul(y, 1.5)):backward()
          return {z, w.grad}
        end, ("%s %s n=%d"):format(fn, dt, n), 1)
      end
    end
  end
end)

T.case("gelu (erf, tanh) forward and backward through casts", function()
  for _, approx in ipairs {"none", "tanh"} do
    local h = sr.randn({64, 96}):to("cuda", "bfloat16")
    check_fused(function()
      local w = h:detach():requires_grad_()
      local y = F.gelu(F.cast(w, "float32"), approx)
      F.sum(F.cast(y, "bfloat16")):backward()
      return {y, w.grad}
    end, "gelu " .. approx, 1)
  end
end)

T.case("binary functions, where and mixed-dtype casts; strided and broadcast operands", function()
  for _, dt in ipairs {"float32", "bfloat16"} do
    local p = sr.randn({33, 65}):to("cuda", dt)
    local q = sr.randn({65, 33}):to("cuda", "bfloat16"):transpose(1, 2)   -- strided
    local row = sr.randn({1, 65}):to("cuda", dt)                          -- broadcast
    for _, fn in ipairs(core.op_names.binary) do
      check_fused(function()
        local r = F[fn](p, F.cast(q, dt))
        return {F.where(F.gt(p, 0), F.cast(r, "float32"), F.mul(F.cast(p + row, "float32"), 2))}
      end, fn .. " " .. dt, 1)
    end
  end
end)

T.case("a residual add of a bf16 branch and a norm then a cast (the records' patterns)", function()
  local x, b = sr.randn({8, 128, 768}):to("cuda"), sr.randn({8, 128, 768}):to("cuda", "bfloat16")
  local plan = check_fused(function()
    local y = x + F.cast(b, "float32")
    return {y, F.cast(F.rms_norm(y, nil, 1e-6), "bfloat16")}
  end, "residual + norm", 2)
  local s = plan:stats()
  T.eq(s.folds, 1, plan:dump())
  T.ok(s.not_stored >= 1, plan:dump())
end)

T.case("rotary with fp32 tables on bf16 q, then the cast back (records 14-21): one bf16 write, equal bits", function()
  local x = sr.randn({1, 256, 6, 128}):to("cuda", "bfloat16")
  local cs, sn = sr.randn({1, 256, 1, 64}):to("cuda"), sr.randn({1, 256, 1, 64}):to("cuda")
  local plan = check_fused(function() return {F.cast(F.rotary(x, cs, sn), "bfloat16")} end, "rotary fold", 1)
  T.eq(plan:stats().folds, 1, plan:dump())
end)

-- the loss kernel (core/fuse.h, 4.): a softcap chain feeding an in-place cross-entropy, the
-- backward's chain on the gradient run inside the same kernel; rows of the GPT-2 vocabulary (16-byte
-- vectors; 512 threads a row for bf16, 1024 for f32) and of an odd length (rows misaligned: head and
-- tail elements), a quarter of the rows ignored
local function tanh_cap(z) return z:div_(30):tanh_() * 30 end
local function sigmoid_cap(z) return F.cast(z, "float32"):div_(7.5):sigmoid_() * 30 end
local function loss_step(dt, V, cap, hold, scale)
  local z0, W = sr.randn({4, 8, 64}):to("cuda", dt), sr.randn({64, V}):to("cuda", dt):requires_grad_()
  local tg = F.cast(F.mul(sr.rand({4, 8}), V - 0.1), "int32")
  tg = F.where(F.lt(sr.rand({4, 8}), 0.25), -100, tg):to("cuda")
  local function forward()
    local s = cap(F.matmul(z0, W))
    if hold then hold[1] = s end
    return F.cross_entropy(s, tg, {inplace = true})
  end
  return T.loss_grad_step(forward, W, scale, hold and function() hold[1] = nil end)
end

T.case("the loss kernels: softcap, in-place cross-entropy, the gradient's chain ahead or deferred (records 9-21)", function()
  for _, dt in ipairs {"float32", "bfloat16"} do
    for _, V in ipairs {50304, 1237} do
      for name, cap in pairs {tanh = tanh_cap, sigmoid = sigmoid_cap} do
        for _, hold in ipairs {false, true} do
          -- 0.125: micro-batches; without the scale fusion (autograd.h) a device tensor's mul, the
          -- loss's backward deferred; with it a host constant the chain's first op applies
          for _, scale in ipairs {false, 0.125, "fusion"} do
            local msg = ("%s softcap, %s, V %d%s%s"):format(name, dt, V, hold and ", logits held" or "",
                                                         scale and ", loss / 8" or "", scale == "fusion" and " (scale fusion)" or "")
            T.with_grad_fusion("scale", scale == "fusion", function()
              local plan = check_fused(loss_step(dt, V, cap, hold and {} or nil, scale and 0.125 or nil), msg, 2)
              local d = plan:dump()
              T.ok(d:find(scale == 0.125 and "=> cross_entropy => %(backward%) mul:" or "=> cross_entropy =>"), msg .. "\n" .. d)
              if scale == "fusion" then T.ok(not d:find("%(backward%) mul:"), msg .. "\n" .. d) end
            end)
          end
        end
      end
    end
  end
end)

T.case("bf16 rounding in pairs (the loss kernels' packed conversion): the conversion's bits for every f32", function()
  local K = require "speedrun.kernel"
  -- every f32 bit pattern (the sign by the pair's second value), rounded by sr_round_bf16_n against
  -- one __float2bfloat16 each; the mismatches counted, the first kept
  local src = [[
#include "speedrun_device.cuh"
extern "C" __global__ void round_check(int *bad, int *first) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (1ll << 31); i += (long long)gridDim.x * blockDim.x) {
    const float v[2] = {__uint_as_float((unsigned)i), __uint_as_float((unsigned)i | 0x80000000u)};
    float w[2] = {v[0], v[1]};
    sr_round_bf16_n<2>(w);
    for (int e = 0; e < 2; e++)
      if (__float_as_uint(w[e]) != __float_as_uint(__bfloat162float(__float2bfloat16(v[e])))) {
        atomicAdd(bad, 1);
        atomicMin(first, (int)i);
      }
  }
}
]]
  local k = assert(K.compile(src, {kernels = {round_check = "ptr int* bad, ptr int* first"}, name = "round_check.cu",
                                   options = {"--use_fast_math"}}))
  local bad = sr.zeros({1}, {dtype = "int32", device = "cuda"})
  local first = sr.full({1}, 0x7fffffff, {dtype = "int32", device = "cuda"})
  k.round_check {grid = 8192, block = 256, args = {bad, first}}
  T.eq(bad:item(), 0, ("values rounded otherwise than the conversion (the first bits 0x%08x)"):format(first:item()))
end)

T.case("random chains into the loss kernels (shapes, dtypes, in-place heads, ignored rows, scales)", function()
  math.randomseed(7)
  for trial = 1, 24 do
    local dt = math.random(2) == 1 and "float32" or "bfloat16"
    local rows, Vr = math.random(1, 9), ({37, 1000, 4099, 50304})[math.random(4)]
    local z0, W = sr.randn({rows, 64}):to("cuda", dt), sr.randn({64, Vr}):to("cuda", dt):requires_grad_()
    local t = F.cast(F.mul(sr.rand({rows}), Vr - 0.01), "int32")
    t = F.where(F.lt(sr.rand({rows}), 0.2), -100, t):to("cuda")
    local softcap, nops = T.random_softcap()
    local scale = ({false, 0.5, 0.125})[math.random(3)]
    local function forward()
      return F.cross_entropy(F.mul(softcap(F.matmul(z0, W)), 2), t, {inplace = true})
    end
    check_fused(T.loss_grad_step(forward, W, scale),
      ("trial %d (%s, %d x %d, %d ops, scale %s)"):format(trial, dt, rows, Vr, nops, tostring(scale)))
  end
end)

T.case("f64 chains are not fused on cuda (no f64 arithmetic kernels there)", function()
  local d = sr.randn({100}):to("cuda", "float64")
  local plan = plan_of(function() return {F.cast(F.cast(d, "float32"), "float64")} end)
  T.eq(plan:stats().groups, 0, plan:dump())
end)

local function tensors_of(t, out, seen)
  out, seen = out or {}, seen or {}
  if sr.is_tensor(t) then out[#out + 1] = t
  elseif type(t) == "table" and not seen[t] then
    seen[t] = true
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do tensors_of(t[k], out, seen) end
  end
  return out
end

local function whole_step(path, scale, over)
  local recipe = assert(util.load_recipe(path))
  local plain = assert(util.recipe_context(recipe, scale, "cuda", 7, over))
  local fused = assert(util.recipe_context(recipe, scale, "cuda", 7, over))
  local cfg = plain.config
  local vocab = math.min((cfg.model or {}).vocab_size or 50257, 50257)
  local x = sr.randint(0, vocab, {cfg.batch.B, cfg.batch.T}):to("cuda")
  local y = sr.randint(0, vocab, {cfg.batch.B, cfg.batch.T}):to("cuda")
  -- as the harness: the schedule's host-side work and the loss's :item() stay outside what is
  -- recorded and fused (the schedule fills its device tensors from the CPU: a step recorded with
  -- it launches on both devices, which the planner refuses)
  local function step(ctx, s)
    return recipe.train_step(ctx, s, {x = x, y = y, step = s})
  end
  local function value(l) return sr.is_tensor(l) and l:item() or l end
  local function schedule(ctx, s) if recipe.schedule then recipe.schedule(ctx, s) end end
  local recs = {}
  for s = 1, 4 do
    schedule(plain, s)
    value(step(plain, s))
    schedule(fused, s)
    local rec = s >= 3 and fuse.record() or nil
    local l = step(fused, s)
    if rec then rec:stop(); recs[#recs + 1] = rec end
    value(l)
  end
  local plan = assert(fuse.plan(recs[1], recs[2]))
  plan:prepare()
  print(plan:dump())
  for s = 5, 7 do
    schedule(plain, s)
    local lp = value(step(plain, s))
    schedule(fused, s)
    local lf = value(fuse.run(plan, step, fused, s))
    local groups, w = fuse.last()
    T.eq(w, nil, path .. ": step " .. s .. " ran as planned")
    T.ok(groups > 0, path .. ": groups fused")
    T.ok(math.abs(lf - lp) <= 1e-4 * math.max(1, math.abs(lp)), ("%s step %d: loss fused %.9g, unfused %.9g"):format(path, s, lf, lp))
  end
  local pa, pb = tensors_of(plain.params or plain), tensors_of(fused.params or fused)
  for i = 1, #pa do
    local d = (pa[i]:to("cpu", "float64") - pb[i]:to("cpu", "float64")):abs():max():item()
    local m = math.max(1, pa[i]:to("cpu", "float64"):abs():max():item())
    T.ok(d <= 1e-3 * m, ("%s: parameter %d differs by %.3g after 3 fused steps"):format(path, i, d))
  end
end

T.case("whole steps of records 1, 5 and 9: fused == unfused (eager, lockstep)", function()
  whole_step("../tasks/record_01/recipe.lua", "micro")
  whole_step("../tasks/record_05/recipe.lua", "micro")
  whole_step("../tasks/record_09/recipe.lua", "micro")  -- the loss kernel with its in-place relay
  whole_step("../tasks/record_09/recipe.lua", "micro", {micro_batch = 2})  -- and deferred (loss / 2)
end)

T.case("speedrun train: the harness's fused CUDA graph matches SPEEDRUN_FUSE=0", function()
  local exe, tmp = arg[-1], (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/gpu-fuse"
  H.mkdir(tmp)
  H.mkdir(tmp .. "/data")
  local data = require "speedrun.data"
  assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", T.token_stream(2000000, 1)))
  assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", T.token_stream(20000, 2)))
  local sh = T.shell_quote
  local DATA = "--train-files " .. sh(tmp .. "/data/syn_train_*.bin") .. " --val-files " .. sh(tmp .. "/data/syn_val_*.bin")
  local function train(env, tag)
    local out = tmp .. "/" .. tag
    os.execute("rm -rf " .. sh(out))
    os.execute(env .. " " .. sh(exe) .. " train ../tasks/record_01/recipe.lua --scale micro --device cuda --steps 40 --target 99 " .. DATA .. " --out "
               .. sh(out) .. " > " .. sh(out .. ".txt") .. " 2>&1")
    local f = io.open(out .. "/results.json")
    T.ok(f, tag .. ": results.json\n" .. (io.open(out .. ".txt") or {read = function() return "" end}):read("a"))
    local r = json.decode(f:read("a"))
    f:close()
    return r
  end
  local on = train("SPEEDRUN_FUSE_DUMP=" .. sh(tmp .. "/plan.txt"), "on")
  local off = train("SPEEDRUN_FUSE=0", "off")
  local g = on.cuda_graph or {}
  T.ok(g.used, "the graph was used: " .. tostring(g.reason))
  T.ok(g.fuse and g.fuse.used, "the captured step was fused: " .. json.encode(g.fuse or {}))
  T.ok(io.open(tmp .. "/plan.txt"), "SPEEDRUN_FUSE_DUMP wrote the plan")
  T.ok(not (off.cuda_graph.fuse or {}).used, "SPEEDRUN_FUSE=0 turns it off")
  local a, b = on.metrics.val_loss, off.metrics.val_loss
  T.ok(math.abs(a - b) <= 1e-3 * math.max(1, math.abs(b)), ("validation loss fused %.6f, unfused %.6f"):format(a, b))
end)

print(("fused results bit-equal to unfused: %d, within one rounding: %d"):format(exact, near))
T.done()
