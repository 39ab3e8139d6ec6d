-- speedrun.harness.steps: the training loop, in the child (docs/harness.md "Host-owned
-- measurement"). The host's clock runs around every step, device-synchronised at its edges; at
-- observation steps it is paused to verify the batch checksums, read the loss and report the
-- step (and the intermediate validation, if any). The warm-up steps are timed apart: their time,
-- less the NVRTC compiles in them (each started on an idle device: host/jit/compile.c) and the
-- engine's setup in them (cudaMalloc, cuBLASLt plans, module loads, graph builds: each timed from
-- an idle device, speedrun.cuda's setup_stats), beyond an allowance of (warm-up steps + 2) mean
-- timed steps (at most 15 % of the timed steps' time, unless the warm-up steps alone are more) is
-- added to the train time, so first-call costs (a cold kernel cache above all) stay out of the
-- score but work moved into the warm-up is counted.
-- With a time budget the clock is read (device-synchronised) after every step past the warm-up,
-- and the loop stops once the train time, counted as above, reaches the budget.
-- The step itself is harness/graph.lua's (eager or a CUDA graph replay).
local H = require "speedrun.harness_core"
local sr = require "speedrun"
local core = require "speedrun.core"
local report = require "speedrun.harness.report"
local kernel_core = require "speedrun.kernel_core"
local cuda = require "speedrun.cuda"
local rules = require "speedrun.harness.rules"

local emit, fail = report.emit, report.fail
local batch_sums, check_batch, check_library = rules.batch_sums, rules.check_batch, rules.check_library
local now, sync, notrain = H.now, H.sync, H.notrain
local compile_seconds = kernel_core.compile_seconds
local setup_stats = cuda.setup_stats   -- captured: speedrun.cuda is a module recipes may load
local is_tensor = sr.is_tensor
local m_item = core.Tensor.methods.item
local fmt = string.format
local mmax, mmin, mhuge = math.max, math.min, math.huge
local type, tostring = type, tostring

local M = {}

local ALLOWANCE_STEPS = 2   -- the warm-up's allowance: (warm-up steps + this) mean timed steps,
-- at most the time of this share of the timed steps' tokens (but never less than the warm-up steps'
-- own mean): with w = min(10, steps // 10) the warm-up steps are at most 1/9 of the timed ones, and
-- the 2 steps of first-call costs fit below 0.15 from 52 steps on (every calibrated reference: 73+),
-- where a recipe choosing 10 large steps had (1 + 2) / 9 of its timed work excused
local ALLOWANCE_SHARE = 0.15

-- the setup kinds that come off the warm-up's clock (clock rule 2, harness/engine.lua CLOCK):
-- each timed from an idle device (the stream drained first: no GPU work runs under it). The
-- allocator's cudaFree calls are timed too and printed, still counted: taking them off changes the
-- rule, and with it every reference's time (to be measured first, then moved with the next rule)
M.OFF_CLOCK = {"driver_alloc_ms", "gemm_plan_ms", "module_load_ms", "graph_build_ms", "gemm_tune_ms"}

-- the off-the-clock time of a setup_stats reading, ms
function M.setup_ms(s)
  local ms = 0
  for _, k in ipairs(M.OFF_CLOCK) do ms = ms + (s[k] or 0) end
  return ms
end

-- the engine's setup so far, in seconds
local function setup_seconds() return M.setup_ms(setup_stats()) / 1000 end

-- the clock: accumulated seconds of the timed steps (clk.acc) and of the warm-up (clk.warm),
-- and of the NVRTC compiles (clk.compile) and the engine's setup (clk.setup) made while the
-- warm-up's clock ran
local function resume(clk)
  local es = sync(clk.cuda)
  if es then fail("cuda_fault", es) end
  clk.c_start, clk.s_start = compile_seconds(), setup_seconds()
  clk.t_start = now(); clk.timing = true
end

local function pause(clk)
  local es = sync(clk.cuda)
  local t = now()
  if clk.timing then
    clk[clk.bucket] = clk[clk.bucket] + (t - clk.t_start)
    if clk.bucket == "warm" then
      clk.compile = clk.compile + (compile_seconds() - clk.c_start)
      clk.setup = clk.setup + (setup_seconds() - clk.s_start)
    end
  end
  clk.timing = false
  if es then fail("cuda_fault", es) end
  check_library("where the clock stopped")   -- before any other code runs off the clock
end

-- the loss the step returned, as a number (nil when none); not finite: a `nan` failure
local function loss_value(loss, step)
  local lv
  if is_tensor(loss) then lv = m_item(loss) elseif type(loss) == "number" then lv = loss end
  if lv and lv ~= lv or lv == mhuge or lv == -mhuge then
    fail("nan", fmt("the training loss became %s at step %d", lv ~= lv and "NaN" or tostring(lv), step))
  end
  return lv
end

local function validation(run, step, train_time_ms)
  local p = run.plan
  local vl = run.rules:validate(false)
  emit {ev = "val", step = step, steps = p.steps, val_loss = vl, train_time_ms = train_time_ms, tokens = step * p.tps}
  return vl
end

-- a step reported, the clock paused: its loss is finite
local function reported(run, clk, step, loss)
  local p = run.plan
  local lv = loss_value(loss, step)
  emit {ev = "step", step = step, steps = p.steps, loss = lv, train_time_ms = clk.acc * 1000, tokens = step * p.tps,
        timed_steps = mmax(0, step - p.skip), wall_ms = (now() - run.wall0) * 1000}
end

-- the intermediate validation after step (an observation step: the clock is paused), if due
local function intermediate(run, clk, step)
  local p = run.plan
  if p.val_every and step % p.val_every == 0 and step < p.steps then
    local vl = validation(run, step, clk.acc * 1000)
    if vl ~= vl then fail("nan", fmt("the validation loss became NaN at step %d", step)) end
  end
end

-- an observation step, the clock paused: the batch was read-only; reported
local function observed(run, clk, step, loss, bx, by, hx, hy)
  check_batch(step, bx, by, hx, hy)
  reported(run, clk, step, loss)
end

-- one step of the loop, every one on the clock (the warm-up's on its own account); returns the
-- step's loss and whether the step was observed
local function step_once(run, clk, step)
  local p = run.plan
  local bucket = step <= p.skip and "warm" or "acc"
  if clk.timing and bucket ~= clk.bucket then pause(clk) end
  clk.bucket = bucket
  if not clk.timing then resume(clk) end
  local x, y = run.loader:next()
  if not x then
    pause(clk)
    fail("lua_error", fmt("the training data ran out at step %d (%d tokens per step)", step, p.tps))
  end
  local observe = step <= p.skip or step == p.steps or step % p.obs_every == 0 or (p.val_every and step % p.val_every == 0)
  local hx, hy
  if observe then
    pause(clk)
    hx, hy = batch_sums(x, y)
    resume(clk)
  end
  if run.restricted then notrain(nil) end   -- the no-training guard is off for the step only
  local loss, bx, by = run.stepper:run(step, x, y)
  if run.restricted then notrain("the harness's work between steps") end
  if observe then
    pause(clk)
    observed(run, clk, step, loss, bx, by, hx, hy)
  end
  return loss, observe
end

-- the train time after `done` steps: the timed steps, plus the warm-up's time, less its
-- compiles and the engine's setup, beyond its allowance
local function counted(p, clk, done)
  local timed = done - p.skip
  local mean = timed > 0 and clk.acc / timed or 0
  local allowance = mmin((p.skip + ALLOWANCE_STEPS) * mean, mmax(p.skip * mean, ALLOWANCE_SHARE * clk.acc))
  if p.skip == 0 then allowance = 0 end
  local compiled = mmin(clk.warm, clk.compile)
  local setup = mmin(clk.warm - compiled, clk.setup)
  local extra = mmax(0, clk.warm - compiled - setup - allowance)
  return (clk.acc + extra) * 1000, {warmup_ms = clk.warm * 1000, allowance_ms = allowance * 1000, counted_ms = extra * 1000,
                                   compile_ms = compiled * 1000, setup_ms = setup * 1000, steps_ms = clk.steps}
end

-- the engine's one-time setup (cuda.setup_stats: cudaMalloc calls, new cuBLASLt plans) between
-- two readings: {driver_allocs, driver_alloc_ms, gemm_plans, gemm_plan_ms}
function M.setup_delta(a, b)
  local d = {}
  for k, v in pairs(b) do d[k] = v - (a[k] or 0) end
  return d
end
local setup_delta = M.setup_delta

-- the time budget (--time-budget), checked between steps after the warm-up (which always runs,
-- as autoresearch leaves its first steps off its budget): the clock paused (device-synchronised),
-- the train time so far, as results.json will count it, against the budget
local function budget_reached(p, clk, done)
  if done <= p.skip then return false end
  pause(clk)
  return counted(p, clk, done) >= p.time_budget * 1000
end

-- run: {plan (harness/recipe.lua), loader, stepper (harness/graph.lua), rules, is_cuda};
-- trains for plan.steps steps, or until the train time reaches plan.time_budget (seconds);
-- returns the train time in ms, the warm-up's account, the steps done and whether the budget
-- stopped the run
function M.train(run)
  local p = run.plan
  local clk = {acc = 0, warm = 0, bucket = "acc", timing = false, cuda = run.is_cuda, compile = 0, setup = 0,
               steps = {}, warm_seen = 0}
  local done, by_budget = 0, false
  run.wall0 = now()
  run.stepper.hold = function(on) if on then pause(clk) else resume(clk) end end
  if p.val_every then validation(run, 0, 0) end
  local setup0 = setup_stats()
  local setup = {}   -- what the first step and the whole warm-up spent on the engine's setup
  for step = 1, p.steps do
    local loss, observe = step_once(run, clk, step)
    done = step
    if step <= p.skip then   -- each warm-up step's time (observed: the clock paused after each)
      clk.steps[step], clk.warm_seen = (clk.warm - clk.warm_seen) * 1000, clk.warm
      if step == 1 then setup.first_step = setup_delta(setup0, setup_stats()) end
      if step == p.skip then setup.warmup = setup_delta(setup0, setup_stats()) end
    end
    if p.time_budget and step < p.steps and budget_reached(p, clk, step) then
      if not observe then reported(run, clk, step, loss) end   -- the last step is in the log
      by_budget = true
      break
    end
    intermediate(run, clk, step)
  end
  if clk.timing then pause(clk) end
  run.stepper:free()
  local ms, warm = counted(p, clk, done)
  warm.setup = setup
  return ms, warm, done, by_budget
end

return M
