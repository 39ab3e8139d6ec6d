-- The step compiler (speedrun.fuse, host/core/fuse*.c) on the CPU: what the planner fuses and
-- refuses (dead intermediates proven by the recorded step, outputs Lua keeps stored, aliasing
-- through another layout refused, cast folding, the loss group and its relay), and fused ==
-- unfused bit for bit over chains of every element-wise function in f32, bf16 and f64. With the CUDA backend built, every generated
-- kernel of these plans also compiles with NVRTC (no GPU needed).
local sr = require "speedrun"
local T = require "speedrun.testing"
local fuse = require "speedrun.fuse"
local core = require "speedrun.core"
local F = sr.F

local plan_of = T.fuse_plan

local function same_bits(a, b, msg)
  a, b = a:contiguous():to("cpu"), b:contiguous():to("cpu")
  T.eq(a.dtype, b.dtype, msg .. " dtype")
  local la, lb = a:view(-1):tolist(), b:view(-1):tolist()
  T.eq(#la, #lb, msg .. " size")
  for i = 1, #la do
    local x, y = la[i], lb[i]
    if not (x == y or (x ~= x and y ~= y)) then
      T.ok(false, ("%s: element %d is %.9g fused, %.9g unfused"):format(msg, i, x, y))
      return
    end
  end
  T.ok(true)
end

-- step() fused with its own plan equals step() unfused (results: a list of tensors)
local function check_fused(step, msg)
  local plan = plan_of(step)
  local want = step()
  local got = fuse.run(plan, step)
  local groups, why = fuse.last()
  T.eq(why, nil, msg .. ": ran as planned")
  for i = 1, #want do same_bits(got[i], want[i], msg .. " result " .. i) end
  return plan, groups
end

local a = sr.randn({8, 33}):to("bfloat16")
local x = sr.randn({8, 33})

T.case("a bf16 branch added to an f32 residual: cast + add, the cast's output never stored", function()
  local plan, groups = check_fused(function() return {x + F.cast(a, "float32")} end, "residual add")
  local s = plan:stats()
  T.eq(s.groups, 1)
  T.eq(s.not_stored, 1)
  T.eq(groups, 1, "the group ran fused")
  T.ok(plan:dump():find("cast:float32 %-> add:float32"), plan:dump())
end)

T.case("an intermediate Lua keeps after the step is stored", function()
  local kept
  local plan = check_fused(function()
    kept = F.cast(a, "float32")
    return {x + kept, kept}
  end, "kept")
  T.eq(plan:stats().not_stored, 0)
end)

T.case("an intermediate read by a later launch is stored", function()
  local plan = check_fused(function()
    local t = F.mul(x, 3)
    local y = t + x
    return {y, F.sum(t)}
  end, "read later")
  T.eq(plan:stats().groups, 1)
  T.eq(plan:stats().not_stored, 0)
end)

T.case("a value written then read through another layout is not fused into one loop", function()
  local sq = sr.randn({16, 16})
  local plan = check_fused(function()
    local u = F.mul(sq, 2)
    return {u + u:transpose(1, 2)}
  end, "transpose")
  T.eq(plan:stats().groups, 0, plan:dump())
end)

T.case("rms_norm then a narrowing cast: the norm writes bf16 itself", function()
  local h = sr.randn({6, 64})
  local plan = check_fused(function() return {F.cast(F.rms_norm(h, nil, 1e-6), "bfloat16")} end, "fold")
  T.eq(plan:stats().folds, 1, plan:dump())
end)

T.case("rotary with fp32 tables on bf16 x, then the cast back (records 14-21): rotary writes bf16 itself", function()
  local x = sr.randn({2, 8, 3, 16}):to("bfloat16")
  local cs, sn = sr.randn({1, 8, 1, 8}), sr.randn({1, 8, 1, 8})
  local plan = check_fused(function() return {F.cast(F.rotary(x, cs, sn), "bfloat16")} end, "rotary fold")
  T.eq(plan:stats().folds, 1, plan:dump())
  T.ok(plan:dump():find("fold: rotary writes the cast's output itself", 1, true), plan:dump())
end)

T.case("a widening cast is not folded (it would change the rounding)", function()
  local h = sr.randn({6, 64}):to("bfloat16")
  local plan = check_fused(function() return {F.cast(F.rms_norm(h, nil, 1e-6), "float32")} end, "no fold")
  T.eq(plan:stats().folds, 0, plan:dump())
end)

T.case("a norm's backward after the widening cast of its gradient (autocast): it reads the bf16 gradient itself", function()
  local xs, Wb = sr.randn({6, 64}), sr.randn({64, 32}):to("bfloat16")
  for _, norm in ipairs {"rms_norm", "layer_norm"} do
    local plan, groups = check_fused(function()   -- the records' weightless norm (records 1-8)
      local xr = xs:detach():requires_grad_()
      local h = norm == "rms_norm" and F.rms_norm(xr, nil, 1e-6) or F.layer_norm(xr, nil, nil, 1e-5)
      local y = F.matmul(F.cast(h, "bfloat16"), Wb)
      F.sum(F.square(F.cast(y, "float32"))):backward()
      return {y, xr.grad}
    end, norm .. " input fold")
    T.ok(plan:dump():find("fold: " .. norm .. "_backward reads the cast's input itself", 1, true), plan:dump())
    T.ok(groups >= 2, "fused groups: " .. groups)
  end
end)

T.case("a norm's gradient with another reader (a second branch) or a weight's grad zeroed between: not folded in", function()
  local xs, Wb = sr.randn({6, 64}), sr.randn({64, 32}):to("bfloat16")
  for _, case in ipairs {"branch", "weight"} do
    local plan = check_fused(function()
      local xr = xs:detach():requires_grad_()
      local w = case == "weight" and sr.ones({64}):requires_grad_() or nil
      local h = F.rms_norm(xr, w, 1e-6)
      local y = F.matmul(F.cast(h, "bfloat16"), Wb)
      local loss = F.sum(F.square(F.cast(y, "float32")))
      if case == "branch" then loss = loss + F.sum(h) end   -- h's gradient: the cast's, plus ones
      loss:backward()
      return {y, xr.grad}
    end, case)
    T.ok(not plan:dump():find("reads the cast's input itself", 1, true), plan:dump())
  end
end)

-- chains of every function, each dtype as storage of the intermediate
local DTYPES = {"float32", "bfloat16", "float64"}
local function positive(t) return F.add(F.abs(t), 0.5) end

T.case("every unary function and its backward, in chains over f32, bf16 and f64: fused == unfused", function()
  local n = 0
  for _, dt in ipairs(DTYPES) do
    for _, fn in ipairs(core.op_names.unary) do
      local base = sr.randn({5, 37}, {dtype = dt})
      local step = function()
        local v = (fn == "log" or fn == "sqrt" or fn == "rsqrt") and positive(base) or base
        local w = v:detach():requires_grad_()
        local y = F[fn](F.mul(w, 0.75))
        local z = F.cast(y, dt == "float64" and "float32" or "float64")
        F.sum(F.mul(y, 1.5)):backward()
        return {z, w.grad}
      end
      check_fused(step, fn .. " " .. dt)
      n = n + 1
    end
  end
  T.ok(n > 30)
end)

T.case("binary functions, where and fill in mixed-dtype chains: fused == unfused", function()
  for _, dt in ipairs(DTYPES) do
    local p, q = sr.randn({7, 19}, {dtype = dt}), sr.randn({7, 19}, {dtype = "bfloat16"})
    for _, fn in ipairs(core.op_names.binary) do
      check_fused(function()
        local l = F.cast(q, dt)
        local r = F[fn](p, l)
        return {F.where(F.gt(p, 0), F.cast(r, "float32"), F.mul(F.cast(p, "float32"), 2))}
      end, fn .. " " .. dt)
    end
  end
end)

T.case("broadcast operands (stride 0) and a scalar: fused == unfused", function()
  local row, s = sr.randn({1, 33}):to("bfloat16"), sr.tensor({0.25})
  check_fused(function() return {F.mul(x + F.cast(row, "float32"), s)} end, "broadcast")
end)

T.case("an in-place chain under autograd (the softcap z:div_(c):tanh_() * c and its backward): fused == unfused", function()
  for _, dt in ipairs {"float32", "bfloat16"} do
    local base = F.cast(x, dt)
    local _, groups = check_fused(function()
      local w = base:detach():requires_grad_()
      local z = F.mul(w, 1.25)
      local s = z:div_(30):tanh_() * 30
      F.sum(F.square(F.cast(s, "float32"))):backward()
      return {s, w.grad}
    end, "in-place softcap " .. dt)
    T.ok(groups >= 1, "fused groups: " .. groups)
  end
end)

-- the loss (core/fuse.h, 4.): a softcap chain, then the in-place cross-entropy over its output,
-- then the backward's chain on the gradient
local V = 40
local tg = F.cast(F.mul(sr.rand({4, 8}), V - 0.1), "int32")
local tg_ignored = F.where(F.lt(sr.rand({4, 8}), 0.25), -100, tg)  -- a quarter of the rows ignored

-- a loss step: logits x W of dtype dt, softcap(logits) into an in-place cross-entropy, W's grad
local function loss_step(dt, softcap, opt)
  opt = opt or {}
  local z0, W = sr.randn({4, 8, V}):to(dt), sr.randn({V, V}):to(dt):requires_grad_()
  local function forward()  -- the capped logits go out of scope here unless opt.hold keeps them
    local s = softcap(F.matmul(z0, W))
    if opt.hold then opt.hold[1] = s end
    return F.cross_entropy(s, opt.targets or tg, {inplace = opt.inplace ~= false})
  end
  return T.loss_grad_step(forward, W, opt.scale, opt.hold and function() opt.hold[1] = nil end)
end
local function tanh_cap(z) return z:div_(30):tanh_() * 30 end                        -- records 9-18
local function sigmoid_cap(z) return F.cast(z, "float32"):div_(7.5):sigmoid_() * 30 end  -- records 19-21

T.case("softcap then an in-place cross-entropy: one loss kernel runs the backward's chain too", function()
  for _, dt in ipairs(DTYPES) do
    local plan, groups = check_fused(loss_step(dt, tanh_cap), "tanh softcap " .. dt)
    local d = plan:dump()
    -- the chain on the gradient writes it in place: the relay has nothing left to do, and the tanh
    -- (read only by that chain) and the logits are never stored
    T.ok(d:find("mul_scalar:" .. dt .. " %-> tanh:" .. dt .. " %-> mul_scalar:" .. dt .. " => cross_entropy => " ..
                "mul_scalar':" .. dt .. " %-> tanh'%(y%):" .. dt .. " %-> mul_scalar':" .. dt .. "  %(1 loads, 0 stores"), d)
    T.ok(d:find("relay %(the gradient's chain, done in place"), d)
    T.eq(groups, plan:stats().groups, "every group ran fused")
    T.eq(plan:stats().losses, 1)
    T.eq(plan:stats().relays, 1)
    local off = T.fuse_plan(loss_step(dt, tanh_cap), {loss = false})  -- the A/B switch: no loss group
    T.eq(off:stats().losses, 0, off:dump())
    T.ok(off:dump():find("mul_scalar:" .. dt .. " %-> tanh:" .. dt .. " %-> mul_scalar:" .. dt .. "  %("), off:dump())
  end
  T.raises(function() T.fuse_plan(loss_step("float32", tanh_cap), {loss = 1}) end, "loss must be a boolean")
  -- the capped logits still referenced during the backward: the chain writes a tensor of its own,
  -- and the relay copies what the loss kernel left in the logits' storage into it
  local plan = check_fused(loss_step("float32", tanh_cap, {hold = {}}), "logits held")
  T.ok(plan:dump():find("relay cast:float32  %(1 loads, 1 stores"), plan:dump())
end)

T.case("the f32 sigmoid softcap on bf16 logits (records 19-21): the gradient's chain ends in a relay cast", function()
  local plan = check_fused(loss_step("bfloat16", sigmoid_cap), "sigmoid softcap")
  local d = plan:dump()
  T.ok(d:find("=> cross_entropy => mul_scalar':float32 %-> sigmoid'%(y%):float32 %-> mul_scalar':float32 %-> " ..
              "cast:bfloat16  %(1 loads, 0 stores"), d)
  T.ok(d:find("relay cast:bfloat16  %(1 loads, 1 stores"), d)
end)

T.case("ignored targets: zero rows, fused == unfused", function()
  for _, dt in ipairs {"float32", "bfloat16"} do
    local plan = check_fused(loss_step(dt, tanh_cap, {targets = tg_ignored}), "ignored rows " .. dt)
    T.ok(plan:dump():find("=> cross_entropy =>"), plan:dump())
  end
end)

T.case("micro-batches (loss / n): the gradient and its chain deferred to the relay, the loss's backward", function()
  -- without the scale fusion (autograd.h) the backward scales the gradient by a device tensor in
  -- place (loss * 0.5) before the chain reads it: the loss kernel computes only the loss and lse;
  -- the relay recomputes the logits from the kept loads
  T.with_grad_fusion("scale", false, function()
    for _, dt in ipairs(DTYPES) do
      for name, cap in pairs {tanh = tanh_cap, sigmoid = sigmoid_cap} do
        local plan, groups = check_fused(loss_step(dt, cap, {scale = 0.5}), "scaled loss, " .. name .. " " .. dt)
        local d = plan:dump()
        T.ok(d:find("=> cross_entropy => %(backward%) mul:"), d)
        T.ok(d:find("relay %(the loss's backward"), d)
        T.eq(plan:stats().losses, 1)
        T.eq(plan:stats().relays, 1)
        T.eq(groups, plan:stats().groups, "every group ran fused")
      end
    end
    -- ignored rows and the logits held through the backward
    check_fused(loss_step("bfloat16", tanh_cap, {scale = 0.25, targets = tg_ignored}), "scaled, ignored rows")
    local plan = check_fused(loss_step("float32", sigmoid_cap, {scale = 0.25, hold = {}}), "scaled, logits held")
    T.ok(plan:dump():find("relay %(the loss's backward"), plan:dump())
  end)
  -- with it, 0.5 is a constant the pass knows: the chain's first op applies it (a host number, no
  -- device tensor's mul); the loss kernel runs the chain ahead where its output fits the logits'
  -- dtype, else the relay does (float64 here)
  for _, dt in ipairs(DTYPES) do
    for name, cap in pairs {tanh = tanh_cap, sigmoid = sigmoid_cap} do
      local plan, groups = check_fused(loss_step(dt, cap, {scale = 0.5}), "scaled loss (fusion), " .. name .. " " .. dt)
      local d = plan:dump()
      T.ok(d:find("=> cross_entropy => [%(backward%) ]*mul_scalar:"), d)
      T.ok(not d:find("%(backward%) mul:"), d)
      T.eq(plan:stats().relays, 1)
      T.eq(groups, plan:stats().groups, "every group ran fused")
    end
  end
  check_fused(loss_step("bfloat16", tanh_cap, {scale = 0.25, targets = tg_ignored}), "scaled (fusion), ignored rows")
  check_fused(loss_step("float32", sigmoid_cap, {scale = 0.25, hold = {}}), "scaled (fusion), logits held")
end)

T.case("a tanh Lua keeps: stored; with micro-batches over the logits the backward reads again: no deferral", function()
  local kept = {}
  local function keep_cap(z)
    local y = z:div_(30):tanh_()  -- in place over the head's output, which the loss kernel loads
    kept[#kept + 1] = y           -- every step's tanh stays alive
    return y * 30
  end
  local plan = check_fused(loss_step("float32", keep_cap), "tanh kept")
  T.ok(plan:dump():find("=> cross_entropy => .-%(1 loads, 1 stores"), plan:dump())
  T.with_grad_fusion("scale", false, function()   -- the scale a device tensor (autograd.h)
    plan = check_fused(loss_step("float32", keep_cap, {scale = 0.5}), "tanh kept, scaled")
    local d = plan:dump()
    T.ok(d:find("mul_scalar:float32 => cross_entropy  %("), d)
    T.eq(plan:stats().relays, 0, d)
  end)
  -- a host constant: applied by the relay's first op, which reads only the gradient
  plan = check_fused(loss_step("float32", keep_cap, {scale = 0.5}), "tanh kept, scaled (fusion)")
  T.ok(plan:dump():find("=> cross_entropy => mul_scalar:float32 %-> .-%(1 loads, 1 stores"), plan:dump())
end)

T.case("two losses, one backward: a relay pending at a time (the first loss keeps its chain)", function()
  for _, scale in ipairs {false, 0.5} do
    local W1, W2 = sr.randn({V, V}):requires_grad_(), sr.randn({V, V}):requires_grad_()
    local z1, z2 = sr.randn({4, 8, V}), sr.randn({4, 8, V})
    local function one(z, W, cap) return F.cross_entropy(cap(F.matmul(z, W)), tg, {inplace = true}) end
    local plan = check_fused(function()
      local loss = one(z1, W1, tanh_cap) + one(z2, W2, sigmoid_cap)
      ;(scale and loss * scale or loss):backward()
      local g1, g2 = W1.grad:clone(), W2.grad:clone()
      W1.grad, W2.grad = nil, nil
      return {loss, g1, g2}
    end, "two losses" .. (scale and ", scaled" or ""))
    T.eq(plan:stats().losses, 2, plan:dump())
    T.ok(plan:stats().relays <= 1, plan:dump())
  end
end)

T.case("a fused group between the softcap and the cross-entropy: no loss group (one group held at a time)", function()
  local q = sr.randn({16})
  local kept = {}
  local plan = check_fused(loss_step("float32", function(z)
    local s = tanh_cap(z)
    kept[#kept + 1] = F.mul(F.add(q, 1), 2)  -- its own two-launch group, launched before the loss
    return s
  end), "group in the gap")
  local d = plan:dump()
  T.ok(d:find("add_scalar:float32 %-> mul_scalar:float32"), d)
  T.ok(not d:find("cross_entropy"), d)
end)

T.case("random chains into the loss (shapes, dtypes, in-place ops, scales): fused == unfused", function()
  math.randomseed(5)
  local formed = 0
  for trial = 1, 24 do
    local dt = ({"float32", "bfloat16", "float64"})[math.random(3)]
    local rows, Vr = math.random(1, 7), math.random(3, 70)
    local z0, W = sr.randn({rows, 16}):to(dt), sr.randn({16, Vr}):to(dt):requires_grad_()
    local t = F.cast(F.mul(sr.rand({rows}), Vr - 0.01), "int32")
    if math.random(2) == 1 then t = F.where(F.lt(sr.rand({rows}), 0.3), -100, t) end
    local softcap, nops = T.random_softcap()
    local scale = ({false, 0.5, 0.125})[math.random(3)]
    local function forward()
      return F.cross_entropy(F.mul(softcap(F.matmul(z0, W)), 2), t, {inplace = true})
    end
    local plan = check_fused(T.loss_grad_step(forward, W, scale),
      ("trial %d (%s, %d x %d, %d ops, scale %s)"):format(trial, dt, rows, Vr, nops, tostring(scale)))
    formed = formed + plan:stats().losses
  end
  T.ok(formed >= 12, "loss groups formed in " .. formed .. " of 24 trials")
end)

T.case("a cross-entropy that is not in place keeps its logits: no loss group", function()
  local plan = check_fused(loss_step("float32", tanh_cap, {inplace = false}), "not in place")
  T.ok(not plan:dump():find("cross_entropy"), plan:dump())
end)

-- the peak of live tensor memory above what was alive before, over step fused with plan (lazy on
-- or off), and its results
local function fused_peak(plan, step, lazy)
  local old = fuse.lazy(lazy)
  collectgarbage(); collectgarbage()
  local base = sr.memory().current
  sr.reset_peak_memory()
  local ok, got = pcall(fuse.run, plan, step)
  fuse.lazy(old)
  if not ok then error(got, 0) end
  local groups, why = fuse.last()
  return sr.memory().peak - base, got, groups, why
end

T.case("lazy outputs: what a group never stores is never allocated; the numbers unchanged", function()
  T.eq(fuse.lazy(), os.getenv("SPEEDRUN_FUSE_LAZY") == "1", "off by default (SPEEDRUN_FUSE_LAZY=1 on)")
  T.raises(function() fuse.lazy(1) end, "boolean expected")
  -- a chain of five launches: four intermediates not stored
  local xx = sr.randn({64, 256})
  local function chain() return {F.cast(F.mul(F.tanh(F.cast(xx, "bfloat16")), 3), "float32") + xx} end
  local plan = plan_of(chain)
  T.eq(plan:stats().not_stored, 4)
  local off = fused_peak(plan, chain, false)
  local on, got, groups, why = fused_peak(plan, chain, true)
  T.eq(why, nil, "ran as planned")
  T.eq(groups, 1)
  same_bits(got[1], chain()[1], "lazy chain")
  T.eq(on, 64 * 256 * 4, "only the output allocated")
  T.ok(off >= on + 64 * 256 * (2 + 2 + 2 + 4), ("unlazy: %d bytes, lazy %d"):format(off, on))
  -- the loss groups: the sigmoid softcap's f32 logits (records 19-21) never allocated, with the
  -- gradient in place (one batch) or deferred to the relay (loss / n)
  for _, scale in ipairs {false, 0.5} do
    local step = loss_step("bfloat16", sigmoid_cap, {scale = scale or nil})
    local lplan = plan_of(step)
    local p_off, want = fused_peak(lplan, step, false)
    local p_on, res, lg, lwhy = fused_peak(lplan, step, true)
    T.eq(lwhy, nil, "loss group ran as planned")
    T.eq(lg, lplan:stats().groups)
    for i = 1, 2 do same_bits(res[i], want[i], "lazy loss result " .. i) end
    local f32_logits = 4 * 8 * V * 4
    T.ok(p_on + f32_logits <= p_off, ("scale %s: %d bytes lazy, %d not"):format(tostring(scale), p_on, p_off))
  end
  -- a tensor made under the plan and first read afterwards gets its memory then
  local later
  local function keeps() later = F.tanh(xx); return {later * 2} end
  local kplan = plan_of(keeps)
  fused_peak(kplan, keeps, true)
  same_bits(later, F.tanh(xx), "read after the step")
end)

T.case("dry recording (fuse.dry): a forked process records steps that run nothing, the plan the same as the real one", function()
  local util = require "speedrun.util"
  local recipe = assert(util.load_recipe("../tasks/record_12/recipe.lua"))
  local ctx = assert(util.recipe_context(recipe, "micro", "cpu", 7))
  local cfg = ctx.config
  local bx, by = util.random_batch(cfg, {cfg.batch.T})
  local function step(s)
    if recipe.schedule then recipe.schedule(ctx, s) end
    return recipe.train_step(ctx, s, {x = bx, y = by, step = s})
  end
  local function record(k) local r = fuse.record(); local l = step(k); r:stop(); l = nil; return r end
  local w0 = F.cast(ctx.params[1], "float64")
  collectgarbage(); collectgarbage()
  local mem0 = sr.memory().current
  local d2, d3 = fuse.dry(function() step(1); return record(2), record(3) end)
  T.ok(d2 and d3, "dry recordings: " .. tostring(d3))
  -- nothing ran here: the weights are as they were, no memory was taken
  T.eq(T.max_diff(F.cast(ctx.params[1], "float64"), w0), 0, "the parameters untouched")
  collectgarbage(); collectgarbage()
  T.eq(sr.memory().current, mem0, "no memory kept")
  local dry = assert(fuse.plan(d2, d3))
  step(1)
  local r2 = record(2)
  local real = assert(fuse.plan(r2, record(3)))
  T.eq(table.concat(d2:launches(), " "), table.concat(r2:launches(), " "), "the same launches")
  T.eq(dry:dump(), real:dump(), "the same plan")
  local loss = fuse.run(dry, step, 4)
  local groups, why = fuse.last()
  T.eq(why, nil, "the dry plan runs a real step as planned")
  T.eq(groups, dry:stats().groups)
  T.ok(loss:item() == loss:item(), "a finite loss")
end)

T.case("dry recording: host reads, errors and a time limit come back as nil and why; the process goes on", function()
  local xx = sr.randn({8})
  local r, why = fuse.dry(function() local rec = fuse.record(); local v = (xx * 2):sum():item(); rec:stop(); return rec end)
  T.eq(r, nil)
  T.ok(tostring(why):find("touched a tensor's memory outside a kernel", 1, true), tostring(why))
  r, why = fuse.dry(function() error("boom", 0) end)
  T.eq(r, nil)
  T.eq(why, "dry run: boom")
  r, why = fuse.dry(function() while true do end end, {timeout = 0.3})
  T.eq(r, nil)
  T.ok(tostring(why):find("no result in", 1, true), tostring(why))
  T.eq(select("#", fuse.dry(function() return 1, "x" end)), 0, "only recordings come back")
  T.raises(function() fuse.dry(function() end, {timeout = -1}) end, "timeout must be positive")
  T.raises(function() fuse.dry(1) end, "function expected")
  -- the dry mode ended with the child: values read here as ever
  T.eq((xx * 0 + 1):sum():item(), 8)
end)

T.case("NVRTC compiles every generated kernel of these plans", function()
  local ok = core.cuda_built == nil or core.cuda_built
  local plan = plan_of(function()
    local w = x:detach():requires_grad_()
    local y = F.gelu(F.mul(w, 0.5) + F.cast(a, "float32"))
    F.sum(F.cast(F.tanh(y), "bfloat16")):backward()
    return {F.where(F.gt(y, 0), y, F.cast(a, "float32")), w.grad}
  end)
  T.ok(plan:stats().groups >= 2, plan:dump())
  local good, log = plan:check_compile()
  if not good and log:find("not built") then return end
  T.ok(good, log)
  for _, step in ipairs {loss_step("bfloat16", tanh_cap), loss_step("bfloat16", sigmoid_cap),
                         loss_step("float32", tanh_cap, {scale = 0.5}),
                         loss_step("bfloat16", sigmoid_cap, {scale = 0.5})} do  -- the loss kernels too
    local p = plan_of(step)
    T.ok(p:dump():find("cross_entropy"), p:dump())
    good, log = p:check_compile()
    T.ok(good, log)
  end
  _ = ok
end)

T.done()
