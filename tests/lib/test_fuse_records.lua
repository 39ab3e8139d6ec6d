-- The step compiler on whole training steps of record recipes (micro scale, CPU): two contexts
-- from one seed step in lockstep; one records two steps and plans them, then runs its steps fused
-- while the other runs them unfused. Losses and every parameter after each step must agree bit
-- for bit (the CPU interpreter rounds every value as the unfused kernels store it), every group
-- must run fused, and the plan must fuse something; in CUDA builds every group's generated kernel
-- must compile (NVRTC).
local sr = require "speedrun"
local T = require "speedrun.testing"
local util = require "speedrun.util"
local fuse = require "speedrun.fuse"
local F = sr.F

local function tensors_of(t, out, seen)
  out, seen = out or {}, seen or {}
  if sr.is_tensor(t) then
    out[#out + 1] = t
  elseif type(t) == "table" and not seen[t] then
    seen[t] = true
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do tensors_of(t[k], out, seen) end
  end
  return out
end

local function value(l) return sr.is_tensor(l) and l:item() or l end

-- over: config overrides at micro scale (e.g. {amp = true}: the autocast path the GPU scales take)
local function check_record(path, over)
  local recipe = assert(util.load_recipe(path))
  local function context()
    local ctx = assert(util.recipe_context(recipe, "micro", "cpu", 7, over))
    return ctx
  end
  local plain, fused = context(), context()
  local cfg = plain.config
  local vocab = math.min((cfg.model or {}).vocab_size or 50257, 50257)
  sr.manual_seed(11)
  local seq = cfg.batch.mode == "seq"   -- records 12+: one flat sequence, documents split by EOTs
  local shape = seq and {cfg.batch.T} or {cfg.batch.B, cfg.batch.T}
  local x, y = sr.randint(0, vocab, shape), sr.randint(0, vocab, shape)
  if seq and cfg.eot then x = F.masked_fill(x, F.lt(sr.rand(cfg.batch.T), 1 / 40), math.min(cfg.eot, vocab - 1)) end
  -- the schedule runs before the step, outside what is recorded and fused (as the harness runs
  -- it: records 13-21 fill their window tensors there when the window moves)
  local function train(ctx, s) return recipe.train_step(ctx, s, {x = x, y = y, step = s}) end
  local function step(ctx, s)
    if recipe.schedule then recipe.schedule(ctx, s) end
    return train(ctx, s)
  end
  local recs = {}
  for s = 1, 4 do  -- both unfused; steps 3 and 4 of `fused` recorded (recording changes nothing)
    local lp = value(step(plain, s))
    if recipe.schedule then recipe.schedule(fused, s) end
    local rec = s >= 3 and fuse.record() or nil
    local lf = train(fused, s)
    if rec then rec:stop(); recs[#recs + 1] = rec end
    T.eq(value(lf), lp, "unfused lockstep, step " .. s)
  end
  local plan = assert(fuse.plan(recs[1], recs[2]))
  local st = plan:stats()
  T.ok(st.groups > 0, path .. ": the plan fuses something\n" .. plan:dump())
  local good, log = plan:check_compile()  -- NVRTC over every group's kernel (CUDA builds; no GPU needed)
  if good or not log:find("not built", 1, true) then T.ok(good, log) end
  for s = 5, 7 do
    local lp = value(step(plain, s))
    if recipe.schedule then recipe.schedule(fused, s) end
    local lf = value(fuse.run(plan, train, fused, s))
    local groups, why = fuse.last()
    T.eq(why, nil, path .. ": step " .. s .. " ran as planned")
    T.eq(groups, st.groups, path .. ": every group ran fused")
    T.eq(lf, lp, path .. ": loss of step " .. s)
  end
  local pa, pb = tensors_of(plain.params or plain), tensors_of(fused.params or fused)
  T.eq(#pa, #pb)
  T.ok(#pa > 0, "parameters found")
  for i = 1, #pa do
    local d = (pa[i]:to("float64") - pb[i]:to("float64")):abs():max():item()
    T.eq(d, 0, path .. ": parameter " .. i .. " after the fused steps")
  end
  return st, plan:dump()
end

T.case("record 1, micro: fused steps == unfused steps", function()
  check_record("../tasks/record_01/recipe.lua")
end)

T.case("record 5, micro: fused steps == unfused steps", function()
  check_record("../tasks/record_05/recipe.lua")
end)

-- under autocast (bf16 GEMM operands, the casts of master weights and activations; the tape
-- recomputes the casts of the norms' and relu2's outputs in the backward): what the proxy and full
-- scales of records 1-9 run on the GPU
for _, n in ipairs {1, 9} do
  T.case(("record %d, micro under autocast: fused steps == unfused steps"):format(n), function()
    local _, dump = check_record(("../tasks/record_%02d/recipe.lua"):format(n), {amp = true})
    if n == 1 then   -- the fp32 residual's norms: the cast of their gradient folded into their backward
      T.ok(dump:find("fold: rms_norm_backward reads the cast's input itself", 1, true), dump)
    end
  end)
end

-- micro-batches (record 9: two of 2 rows, loss / 2): the loss group defers the gradient and its
-- chain to the relay, the loss's backward
T.case("record 9, micro in two micro-batches: fused steps == unfused steps, the loss's backward deferred", function()
  local st = check_record("../tasks/record_09/recipe.lua", {micro_batch = 2})
  T.eq(st.losses, 2, "a loss group a micro-batch")
  T.eq(st.relays, 2)
end)

-- the softcap written in place (9), flex attention with the window in a device tensor (13),
-- the device-built block lists with argsort (15), long/short windows and the FP8 head (20)
local has_flex = pcall(require, "speedrun.attention") and F.flex_attention ~= nil
for _, n in ipairs {9, 13, 15, 20} do
  T.case(("record %d, micro: fused steps == unfused steps"):format(n), function()
    if n >= 12 and not has_flex then T.skip("flex attention not in this build") end
    check_record(("../tasks/record_%02d/recipe.lua"):format(n))
  end)
end

T.done()
