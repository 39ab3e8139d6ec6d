-- bench/memory_recipe.lua: what a recipe's training step keeps alive, per token, on the CPU.
--   speedrun run bench/memory_recipe.lua RECIPE.lua [--scale full|proxy|micro] [--tokens N[,M]]
--       [--recompute on|off|both] [--fuse off|on] [--seed S]
-- Builds the recipe at a scale (default full: the record's model and optimizer) with N tokens per
-- micro-batch (default 2048; seq mode: one flat sequence of N, bt mode: N / T rows of the scale's
-- T), runs one step (the optimizer's state made), then a second one and reports, above what was
-- alive before it (weights, optimizer state): the live bytes when the step's first backward()
-- starts (the end of the forward: the activations kept for the backward, after a full Lua
-- collection: what the tape and the recipe hold, not temporaries Lua has yet to collect) and the step's peak,
-- each also per token. speedrun.memory counts tensor storage alike on both devices (and the CPU's
-- attention keeps the GPU's layouts), so this predicts the GPU's activations at the record's own
-- micro-batch without a GPU: with two token counts (--tokens N,M) the line through both, per token
-- and fixed, and its value at the scale's micro-batch (before the allocator's rounding and the CUDA
-- graph's pool). --recompute (default both): the tape's recompute trade on, off, or each in turn
-- (docs/cuda.md "Recompute"). --fuse on: the measured step runs with the step compiler's plan of
-- the two steps before it, its lazy outputs on (fuse.lazy: what a group never stores is never
-- allocated), as a fused CUDA graph replays it (the CPU interpreter computes the same numbers). With SPEEDRUN_MEMLOG=<MiB> and bench/memlog_live.py --at "backward
-- starts", what is alive at that point, by the Lua line that made it.
local sr = require "speedrun"
local util = require "speedrun.util"
local core = require "speedrun.core"
local options = require "speedrun.harness.options"

local USAGE = "usage: speedrun run bench/memory_recipe.lua RECIPE.lua [--scale full|proxy|micro] [--tokens N[,M]] "
  .. "[--recompute on|off|both] [--fuse off|on] [--seed S]"
local function die(msg) io.stderr:write("memory_recipe.lua: ", msg, "\n") os.exit(2) end

local opt, pos = options.parse(arg, {scale = "value", tokens = "value", recompute = "value", fuse = "value", seed = "value"})
if not opt then die(pos .. "\n" .. USAGE) end
local path = pos[1] or die(USAGE)
local scale = opt.scale or "full"
local counts = {}
for t in tostring(opt.tokens or 2048):gmatch("[^,]+") do
  local n = math.tointeger(tonumber(t))
  if not n or n < 1 then die("--tokens must be one or two positive integers (N or N,M)") end
  counts[#counts + 1] = n
end
if #counts < 1 or #counts > 2 or counts[1] == counts[2] then
  die("--tokens must be one or two different counts (N or N,M)")
end
local seed = math.tointeger(tonumber(opt.seed or 1)) or die("--seed must be an integer")
local modes = ({on = {true}, off = {false}, both = {false, true}})[opt.recompute or "both"]
  or die("--recompute must be on, off or both")
local fused = ({on = true, off = false})[opt.fuse or "off"]
if fused == nil then die("--fuse must be on or off") end
local fuse = fused and require "speedrun.fuse"


local recipe, err = util.load_recipe(path)
if not recipe then die(err) end
local base_cfg = recipe.config[scale] or die("the recipe has no scale " .. scale)
local batches = {}   -- per count: the config overrides and the batch shape (util.one_micro_batch)
for _, n in ipairs(counts) do
  local over, shape = util.one_micro_batch(base_cfg, n)
  if not over then die(shape) end
  batches[n] = {over = over, shape = shape}
end

local methods = core.Tensor.methods
local real_backward = methods.backward
local at_backward   -- live bytes when the measured step's first backward() starts
methods.backward = function(self, ...)
  if at_backward == false then
    collectgarbage(); collectgarbage()   -- what is kept, not what Lua has yet to collect
    at_backward = sr.memory("cpu").current
    io.stderr:write("memory_recipe: backward starts\n")
  end
  return real_backward(self, ...)
end

-- one measurement: {base, kept, peak} bytes (kept and peak above base; kept nil without a backward)
local function measure(on, tokens)
  local over, shape = batches[tokens].over, batches[tokens].shape
  local old = sr.grad_fusion("recompute", on)
  local ctx = util.recipe_context(recipe, scale, "cpu", seed, over)
  local x, y = util.random_batch(ctx.config, shape)
  local function step(s)
    if recipe.schedule then recipe.schedule(ctx, s) end
    return recipe.train_step(ctx, s, {x = x, y = y, step = s})
  end
  step(1)
  local run, s, plan_line = step, 2, ""
  if fused then  -- the plan of steps 2 and 3; the measured step 4 runs under it, lazy outputs on
    local recs = {}
    for k = 1, 2 do
      recs[k] = fuse.record()
      local keep = step(1 + k)
      recs[k]:stop()
      keep = nil
    end
    local plan = assert(fuse.plan(recs[1], recs[2]))
    local st = plan:stats()
    run = function(k) return fuse.run(plan, step, k) end
    s, plan_line = 4, (", fused (%d groups, lazy outputs)"):format(st.groups)
    fuse.lazy(true)
  end
  collectgarbage(); collectgarbage()
  local base = sr.memory("cpu").current
  sr.reset_peak_memory("cpu")
  at_backward = false
  local loss = run(s)
  loss = nil
  if fused then
    local groups, why = fuse.last()
    fuse.lazy(false)
    plan_line = plan_line .. (why and (" [" .. why .. "]") or (", %d ran fused"):format(groups))
  end
  local peak = sr.memory("cpu").peak
  sr.grad_fusion("recompute", old)
  local kept = at_backward and at_backward - base
  at_backward = nil
  local mib = 2 ^ 20
  print(("%s, scale %s, %d tokens a micro-batch, recompute %s%s: before the step %.1f MiB; at the first backward +%s; step peak +%.1f MiB (%.1f KiB a token)")
    :format(recipe.name or path, scale, tokens, on and "on" or "off", plan_line, base / mib,
            kept and ("%.1f MiB (%.1f KiB a token)"):format(kept / mib, kept / tokens / 1024) or "? (no backward())",
            (peak - base) / mib, (peak - base) / tokens / 1024))
  return {base = base, kept = kept, peak = peak - base}
end

-- the scale's own micro-batch in tokens
local b = base_cfg.batch
local mb_tokens = b.mode == "seq" and (base_cfg.micro_batch or b.T) or (base_cfg.micro_batch or b.B) * b.T

for _, on in ipairs(modes) do
  local m = {}
  for i, n in ipairs(counts) do m[i] = measure(on, n) end
  if #counts == 2 and m[1].kept and m[2].kept then
    local dn, gb, mib = counts[2] - counts[1], 1e9, 2 ^ 20
    local function line(f)  -- per token and fixed parts of the line through the two measurements
      local per = (m[2][f] - m[1][f]) / dn
      return per, m[1][f] - per * counts[1]
    end
    local kp, kf = line("kept")
    local pp, pf = line("peak")
    local at = function(per, fixed) return (m[2].base + fixed + per * mb_tokens) / gb end
    print(("fit (recompute %s): at the first backward %.1f KiB a token + %.1f MiB, "
           .. "step peak %.1f KiB a token + %.1f MiB; at the scale's micro-batch of %d tokens, "
           .. "with the %.2f GB before the step: %.2f GB at the first backward, "
           .. "%.2f GB step peak (tensor storage, before the allocator's rounding)")
      :format(on and "on" or "off", kp / 1024, kf / mib, pp / 1024, pf / mib, mb_tokens, m[2].base / gb,
              at(kp, kf), at(pp, pf)))
  end
end
