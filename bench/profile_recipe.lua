-- bench/profile_recipe.lua: where a recipe's training step spends its time, per kernel and phase.
--   speedrun run bench/profile_recipe.lua RECIPE.lua [--scale full|proxy|micro] [--device cuda|cpu]
--       [--steps K] [--warmup W] [--top N] [--seed S] [--fuse on|off|noloss] [--dump-plan] [--tokens N]
-- Builds the recipe's context as tasks/fidelity/ours.lua does (recipe.setup on the scale's
-- config), and feeds every step one batch of random tokens of the scale's shape: x, y [B, T] int32
-- in [0, min(vocab_size, 50257)) (the GPT-2 ids the harness feeds; the recipe splits B into its
-- micro-batches); in seq mode (records 12+) x, y [T] with the recipe's end-of-text token at a
-- random ~1 in 600 positions, so the document masks have FineWeb's sparsity (util.random_batch).
-- Runs W warm-up steps, then K steps timed without the profiler (synchronised wall
-- clock), then K more under the profiler, all eager (no CUDA graph); prints both ms/step and the
-- profile (speedrun.profile) by op and phase, then by op. Defaults: W 3, K 5, top 40, scale proxy
-- on cuda and micro on cpu, device cuda when usable. --tokens N: the scale's model and optimizer
-- with one micro-batch of N tokens a step (seq mode one flat sequence, bt mode N / T rows): a
-- record's full step, launch by launch, in minutes on the CPU (util.one_micro_batch). Each call of
-- recipe.schedule(ctx, step) before train_step, as the harness does, is part of the step.
-- --fuse on|off|noloss: on cuda, also captures the step into a CUDA graph as the harness does, with
-- the step compiler's plan (on), without (off), or with a plan without loss groups (noloss: what
-- they are worth; docs/cuda.md), and prints the replayed ms/step; with on or noloss (either
-- device) the profiled steps then run eagerly with the plan installed, so the profile is the fused
-- step's: each fused group one "fused.<its ops>" row, where the launches it replaces were (what a
-- scored run's graph replays, kernel by kernel). --dump-plan prints the plan (docs/cuda.md "The
-- step compiler"). --first: step 1 itself profiled first (the warm-up's first step, where a scored
-- run's counted warm-up is largest: tasks/CALIBRATION.md), its wall time, the engine's setup in it
-- (cuda.setup_stats: driver allocations, GEMM plans, module loads) and its ops by time; a host
-- stall before a launch (first use) shows in that launch's row, the device being idle meanwhile.
local sr = require "speedrun"
local profile = require "speedrun.profile"
local util = require "speedrun.util"
local options = require "speedrun.harness.options"

local USAGE = "usage: speedrun run bench/profile_recipe.lua RECIPE.lua [--scale full|proxy|micro] "
  .. "[--device cuda|cpu] [--steps K] [--warmup W] [--top N] [--seed S] [--fuse on|off|noloss] [--dump-plan] [--tokens N] [--first]"

local function die(msg) io.stderr:write("profile_recipe.lua: ", msg, "\n") os.exit(2) end

local opt, pos = options.parse(arg, {scale = "value", device = "value", steps = "value", warmup = "value", top = "value",
                                     seed = "value", fuse = "value", ["dump-plan"] = "flag", tokens = "value",
                                     first = "flag"})
if not opt then die(pos .. "\n" .. USAGE) end
local recipe_path = pos[1] or die(USAGE)

local function count(name, default, min)
  local v = opt[name] and math.tointeger(tonumber(opt[name])) or (not opt[name] and default)
  if not v or v < min then die(("--%s must be an integer >= %d"):format(name, min)) end
  return v
end
local steps, warmup, top, seed = count("steps", 5, 1), count("warmup", 3, 0), count("top", 40, 1), count("seed", 1, 0)
local device = opt.device or (sr.cuda_available() and "cuda" or "cpu")
if device ~= "cuda" and device ~= "cpu" then die("--device must be cuda or cpu") end
if device == "cuda" and not sr.cuda_available() then die("--device cuda: CUDA is not usable here") end
local scale = opt.scale or (device == "cuda" and "proxy" or "micro")

-- the recipe and its context (speedrun.util, as tasks/fidelity/ours.lua)
local recipe, lerr = util.load_recipe(recipe_path)
if not recipe then die(lerr) end
local mode = recipe.config[scale] and recipe.config[scale].batch.mode or "bt"
if mode ~= "bt" and mode ~= "seq" then die("batch modes bt and seq are supported (this scale uses " .. mode .. ")") end
local over, shape
if opt.tokens then
  if not recipe.config[scale] then die("the recipe has no scale " .. scale) end
  over, shape = util.one_micro_batch(recipe.config[scale], count("tokens", nil, 1))
  if not over then die(shape) end
end
local ctx, cerr = util.recipe_context(recipe, scale, device, seed, over)
if not ctx then die(cerr) end
local cfg, b = ctx.config, ctx.config.batch

shape = shape or (mode == "bt" and {b.B, b.T} or {b.T})
local x, y = util.random_batch(cfg, shape)
x, y = x:to(device), y:to(device)
-- tokens per micro-batch (seq: micro_batch counts tokens, one sequence each) and sequences per step
local mb = cfg.micro_batch or (mode == "bt" and b.B or b.T)
local per_step = mode == "bt" and b.B // mb or b.T // mb

-- step numbers stay inside the scale's schedule however many steps are run: the next one, its
-- schedule (host-side work before train_step, as the harness runs it) done
local done = 0
local function next_step()
  local step = done % cfg.steps + 1
  done = done + 1
  if recipe.schedule then recipe.schedule(ctx, step) end
  return step
end
local function train_step(step) return recipe.train_step(ctx, step, {x = x, y = y, step = step}) end
local run_step = train_step   -- the step as timed and profiled: with the fused plan installed under --fuse on
local function train_steps(n)
  local loss
  for _ = 1, n do loss = run_step(next_step()) end
  return loss
end

local function timed_ms_per_step()
  sr.synchronize()
  local t0 = sr.clock()
  local loss = train_steps(steps)
  sr.synchronize()
  return 1e3 * (sr.clock() - t0) / steps, loss
end

print(("recipe %s (%s), scale %s, device %s: batch %s (%s mode, micro-batch %d, %d per step), %d warm-up + %d steps")
  :format(recipe.name or "?", recipe_path, scale, device, table.concat(shape, " x "), mode, mb, per_step, warmup, steps))
if opt.first then   -- step 1 under the profiler, before anything else ran
  local stats = device == "cuda" and require("speedrun.cuda").setup_stats or function() return {} end
  local s0 = stats()
  sr.synchronize()
  local t0 = sr.clock()
  local rows = profile.run(function() train_steps(1) sr.synchronize() end)
  local ms, kms = 1e3 * (sr.clock() - t0), 0
  for _, r in ipairs(rows) do kms = kms + r.ms end
  -- the setup in it as the harness's warm-up line names it (steps.setup_delta, output.setup_text)
  local setup = device == "cuda" and require("speedrun.harness.output").setup_text(require("speedrun.harness.steps").setup_delta(s0, stats()))
  print(("step 1 under the profiler: %.1f ms wall, %.1f ms in its ops' rows; setup in it: %s")
    :format(ms, kms, setup or "none recorded (CPU)"))
  print(profile.report(rows, {top = top, by = "op"}))
  warmup = math.max(warmup - 1, 0)
end
train_steps(warmup)
collectgarbage()
sr.reset_peak_memory(device)
local base = sr.memory(device).current
local plain_ms, loss = timed_ms_per_step()
if sr.is_tensor(loss) then loss = loss:item() end
print(("ms/step without the profiler: %.3f (last loss %s)"):format(plain_ms, tostring(loss)))
print(("peak %s memory in those steps: %.1f MiB (%.1f MiB live before them: weights and optimizer state)")
  :format(device, sr.memory(device).peak / 2^20, base / 2^20))
local fused_groups_line   -- set under --fuse on: prints the groups the last profiled step fused
if opt.fuse then
  local fuse, cuda = require "speedrun.fuse", require "speedrun.cuda"
  if opt.fuse ~= "on" and opt.fuse ~= "off" and opt.fuse ~= "noloss" then die("--fuse must be on, off or noloss") end
  local plan
  if opt.fuse ~= "off" or opt["dump-plan"] then
    local recs = {}
    for k = 1, 2 do  -- train_step alone, as the harness records and captures it (not the schedule)
      local step = next_step()
      recs[k] = fuse.record()
      local keep = train_step(step)
      recs[k]:stop()
      keep = nil
    end
    local err
    plan, err = fuse.plan(recs[1], recs[2], {loss = opt.fuse ~= "noloss"})
    if not plan then die("no plan: " .. tostring(err)) end
    local off, perr = plan:prepare()
    if opt["dump-plan"] then print(plan:dump()) end
    if off > 0 then print(("%d groups disabled: %s"):format(off, perr)) end
    if opt.fuse == "off" then plan = nil end
  end
  local function fused_step(...) return fuse.run(plan, train_step, ...) end
  local function groups_line(what)
    local n, why = fuse.last()
    print(("fused groups %s: %d%s"):format(what, n, why and (" (" .. why .. ")") or ""))
  end
  if device == "cuda" then
    local g = cuda.graph(plan and fused_step or train_step, next_step())
    if plan then groups_line("in the capture") end
    if not g.captured then die("capture failed: " .. tostring(g.reason)) end
    g:replay()
    sr.synchronize()
    local t0 = sr.clock()
    for _ = 1, steps do g:replay() end
    sr.synchronize()
    print(("ms/step replayed as a CUDA graph, fusion %s: %.3f"):format(opt.fuse, 1e3 * (sr.clock() - t0) / steps))
    g:free()
  end
  if plan then
    run_step = fused_step
    fused_groups_line = groups_line
  end
end
local rows, profiled_ms = profile.run(timed_ms_per_step)
if fused_groups_line then
  print("\nprofiled with the fused plan installed (eager): each fused group one \"fused.<ops>\" row")
  fused_groups_line("in the last profiled step")
end
local kernel_ms = 0
for _, r in ipairs(rows) do kernel_ms = kernel_ms + r.ms end
print(("ms/step with the profiler:    %.3f"):format(profiled_ms))
print(("kernel time per step:         %.3f (%.1f%% of the profiled step; the rest is host work and gaps)")
  :format(kernel_ms / steps, profiled_ms > 0 and 100 * kernel_ms / steps / profiled_ms or 0))
print(("\nby op and phase (totals over %d steps):"):format(steps))
print(profile.report(rows, {top = top, by = "phase"}))
print(("\nby op (totals over %d steps):"):format(steps))
print(profile.report(rows, {top = top, by = "op"}))
