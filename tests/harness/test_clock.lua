-- The host's clock (harness/steps.lua) on a scripted run: the warm-up's time beyond its allowance
-- is counted, its NVRTC compiles and the engine's setup are not (a cold kernel cache, the first
-- cudaMalloc calls must not cost a score), and neither comes off the timed steps. The compiler is replaced by a stand-in whose
-- compile_seconds() the scripted steps advance while they spin, as NVRTC's clock would, on a
-- virtual clock. The engine's setup account (cuda.setup_stats) is a stand-in too, which the
-- scripted steps advance.
local T = require "speedrun.testing"
local sr = require "speedrun"
local H = require "speedrun.harness_core"

-- a virtual clock (a loaded machine must not make the test flaky): spin advances it exactly
local fake = {seconds = 0, t = 0, setup = {driver_allocs = 0, driver_alloc_ms = 0, gemm_plans = 0, gemm_plan_ms = 0}}
local kernel_core, cuda, now, emit = package.loaded["speedrun.kernel_core"], package.loaded["speedrun.cuda"], H.now, H.emit
package.loaded["speedrun.kernel_core"] = {compile_seconds = function() return fake.seconds end}
package.loaded["speedrun.cuda"] = {setup_stats = function()
  local c = {} for k, v in pairs(fake.setup) do c[k] = v end return c
end}
H.now = function() return fake.t end
H.emit = function() end   -- the child's event channel: not open in a test
package.loaded["speedrun.harness.steps"] = nil
local steps = require "speedrun.harness.steps"
package.loaded["speedrun.kernel_core"], package.loaded["speedrun.cuda"], H.now, H.emit = kernel_core, cuda, now, emit
local output = require "speedrun.harness.output"

local function spin(s, compiling)
  fake.t = fake.t + s
  if compiling then fake.seconds = fake.seconds + s end
end

-- a run of `n` steps (the first `skip` warm-up), each step spinning `work(step)` seconds, of which
-- `compile(step)` seconds are "compiling" and `setup(step)` seconds (if given) the engine's setup
-- (cudaMalloc, as setup_stats would time it, or the kind setup's third result names: its `_ms`
-- field); either held (the clock paused) when it says so
local function run(n, skip, work, compile, setup)
  local x, y = sr.zeros(2, 4), sr.zeros(2, 4)
  local plan = {steps = n, skip = skip, tps = 8, obs_every = 1000}
  local stepper = {free = function() end}
  stepper.run = function(_, step)
    local c, held = compile(step)
    if held then stepper.hold(true) end   -- the harness's own work, the clock paused
    spin(c, true)
    if held then stepper.hold(false) end
    local su, sheld, kind = 0, false, nil
    if setup then su, sheld, kind = setup(step) end
    kind = kind or "driver_alloc_ms"
    if sheld then stepper.hold(true) end
    spin(su, false)
    fake.setup[kind] = (fake.setup[kind] or 0) + su * 1000
    if sheld then stepper.hold(false) end
    spin(work(step), false)
    return 1.0, x, y
  end
  local ms, warm, done = steps.train {plan = plan, loader = {next = function() return x, y end}, stepper = stepper,
                                      rules = {}, is_cuda = false}
  return ms, warm, done
end

local STEP = 0.01
T.case("clock: a warm-up compile stays off the train time; warm-up work beyond the allowance counts", function()
  local none = function() return 0 end
  local ms0, w0 = run(20, 5, function() return STEP end, none)
  T.ok(w0.counted_ms < 3 * STEP * 1000, ("an honest warm-up is covered by its allowance: %.1f ms counted"):format(w0.counted_ms))
  T.eq(#w0.steps_ms, 5, "each warm-up step's time")
  -- a 0.3 s compile in warm-up step 3 (a cold kernel cache): off the clock
  local ms1, w1 = run(20, 5, function() return STEP end, function(s) return s == 3 and 0.3 or 0 end)
  T.ok(w1.compile_ms >= 290, ("the compile is measured: %.1f ms"):format(w1.compile_ms))
  T.ok(math.abs(ms1 - ms0) < 1e-6, ("a cold cache costs no score: %.1f ms vs %.1f ms warm"):format(ms1, ms0))
  -- 0.3 s of work (no compile) in the same step: counted
  local ms2, w2 = run(20, 5, function(s) return s == 3 and 0.3 + STEP or STEP end, none)
  T.ok(w2.counted_ms > 200 and ms2 > ms0 + 200, ("work moved into the warm-up is counted: %.1f ms of %.1f"):format(w2.counted_ms, ms2))
  T.ok(math.abs(w2.steps_ms[3] - 310) < 1e-6 and math.abs(w2.steps_ms[2] - 10) < 1e-6, "the slow warm-up step is named")
  -- a compile while the clock is held is not taken off the warm-up's work a second time
  local ms4, w4 = run(20, 5, function(s) return s == 3 and 0.3 + STEP or STEP end,
                      function(s) if s == 2 then return 0.3, true end return 0 end)
  T.ok(w4.compile_ms < 20 and ms4 > ms0 + 200, ("held compile %.1f ms, warm-up work still counted: %.1f ms"):format(w4.compile_ms, ms4))
  -- a compile in a timed step stays on the clock
  local ms3 = run(20, 5, function() return STEP end, function(s) return s == 12 and 0.3 or 0 end)
  T.ok(ms3 > ms0 + 250, ("a compile after the warm-up is timed: %.1f ms vs %.1f ms"):format(ms3, ms0))
  -- ... and does not excuse warm-up work either
  local ms5, w5 = run(20, 5, function(s) return s == 3 and 0.3 + STEP or STEP end, function(s) return s == 12 and 0.3 or 0 end)
  T.ok(w5.compile_ms == 0 and w5.counted_ms > 100 and ms5 > ms2 + 150,
       ("timed compile and warm-up work both counted: %.1f ms (warm-up %.1f counted)"):format(ms5, w5.counted_ms))
end)

T.case("clock: the warm-up's engine setup stays off the train time as its compiles do; in a timed step it counts", function()
  local none = function() return 0 end
  local base = function() return STEP end
  local ms0, w0 = run(20, 5, base, none)
  -- 0.3 s of cudaMalloc calls in warm-up step 3 (a capture's pool, say): off the clock
  local ms1, w1 = run(20, 5, base, none, function(s) return s == 3 and 0.3 or 0 end)
  T.ok(math.abs(w1.setup_ms - 300) < 1e-6, ("the setup is measured: %.1f ms"):format(w1.setup_ms))
  T.ok(math.abs(ms1 - ms0) < 1e-6 and math.abs(w1.counted_ms - w0.counted_ms) < 1e-6,
       ("the engine's first-call costs cost no score: %.1f ms vs %.1f ms"):format(ms1, ms0))
  -- the allocator's cudaFree calls are timed but stay on the clock under rule 2 (steps.OFF_CLOCK)
  local ms1f, w1f = run(20, 5, base, none, function(s) return s == 3 and 0.3 or 0, false, "driver_free_ms" end)
  T.ok(w1f.setup_ms == 0 and ms1f > ms0 + 250, ("cudaFree in the warm-up counted: %.1f ms vs %.1f ms"):format(ms1f, ms0))
  -- setup while the clock is held is not taken off the warm-up's work a second time
  local ms2 = run(20, 5, function(s) return s == 3 and 0.3 + STEP or STEP end, none,
                  function(s) if s == 2 then return 0.3, true end return 0 end)
  T.ok(ms2 > ms0 + 200, ("held setup, warm-up work still counted: %.1f ms vs %.1f ms"):format(ms2, ms0))
  -- setup in a timed step stays on the clock, and excuses no warm-up work
  local ms3 = run(20, 5, base, none, function(s) return s == 12 and 0.3 or 0 end)
  T.ok(ms3 > ms0 + 250, ("setup after the warm-up is timed: %.1f ms vs %.1f ms"):format(ms3, ms0))
  local ms4, w4 = run(20, 5, function(s) return s == 3 and 0.3 + STEP or STEP end, none,
                      function(s) return s == 12 and 0.3 or 0 end)
  T.ok(w4.setup_ms == 0 and w4.counted_ms >= 199 and ms4 >= ms3 + 199,
       ("timed setup and warm-up work both counted: %.1f ms (warm-up %.1f counted)"):format(ms4, w4.counted_ms))
  -- setup beside warm-up work: only the setup's own time comes off
  local ms5, w5 = run(20, 5, function(s) return s == 3 and 0.3 + STEP or STEP end, none,
                      function(s) return s == 3 and 0.2 or 0 end)
  T.ok(math.abs(ms5 - run(20, 5, function(s) return s == 3 and 0.3 + STEP or STEP end, none)) < 1e-6,
       ("0.2 s of setup beside 0.3 s of work: the work counted as without it (%.1f ms, setup %.1f)"):format(ms5, w5.setup_ms))
end)

T.case("clock: the allowance is at most 15 % of the timed steps' time (few large steps), never below the warm-up's own steps", function()
  local none = function() return 0 end
  -- 10 steps, 1 warm-up step doing 3 steps' work: (1 + 2) mean steps was the allowance (a third of
  -- the 9 timed steps' work excused); now 0.15 x 9 = 1.35 mean steps
  local ms, w = run(10, 1, function(s) return s == 1 and 3 * STEP or STEP end, none)
  T.ok(math.abs(w.allowance_ms - 1.35 * STEP * 1000) < 1e-6, ("allowance %.3f ms"):format(w.allowance_ms))
  T.ok(math.abs(w.counted_ms - 1.65 * STEP * 1000) < 1e-6, ("counted %.3f ms"):format(w.counted_ms))
  T.ok(math.abs(ms - (9 + 1.65) * STEP * 1000) < 1e-6, ("train time %.3f ms"):format(ms))
  -- 100 steps (10 warm-up): (10 + 2) / 90 = 13.3 % of the timed time, under the cap: unchanged
  local _, w100 = run(100, 10, function() return STEP end, none)
  T.ok(math.abs(w100.allowance_ms - 12 * STEP * 1000) < 1e-6, ("allowance %.3f ms"):format(w100.allowance_ms))
  -- a warm-up longer than 15 % by choice (5 of 20): its own steps stay excused, the 2 extra do not
  local _, w5 = run(20, 5, function() return STEP end, none)
  T.ok(math.abs(w5.allowance_ms - 5 * STEP * 1000) < 1e-6 and w5.counted_ms < 1e-6, ("allowance %.3f ms"):format(w5.allowance_ms))
end)

T.case("clock: the warm-up's engine setup (cudaMalloc, GEMM plans) is accounted, step 1 apart", function()
  local function grow(allocs, ms, plans, pms)
    local f = fake.setup
    f.driver_allocs, f.driver_alloc_ms = f.driver_allocs + allocs, f.driver_alloc_ms + ms
    f.gemm_plans, f.gemm_plan_ms = f.gemm_plans + plans, f.gemm_plan_ms + pms
  end
  fake.setup = {driver_allocs = 7, driver_alloc_ms = 3, gemm_plans = 2, gemm_plan_ms = 1}   -- before the run
  local _, w = run(20, 5, function(s)
    if s == 1 then grow(40, 20, 12, 90) elseif s == 4 then grow(2, 1, 3, 5) elseif s == 15 then grow(1, 1, 1, 1) end
    return STEP
  end, function() return 0 end)
  T.eq(w.setup.first_step.driver_allocs, 40) T.eq(w.setup.first_step.gemm_plan_ms, 90)
  T.eq(w.setup.warmup.driver_allocs, 42, "the warm-up's, not the timed steps'") T.eq(w.setup.warmup.gemm_plans, 15)
  local line = output.setup_note(w.setup.first_step, w.setup.warmup)
  T.eq(line, "; setup in step 1: 40 cudaMalloc 20ms, 12 GEMM plans 90ms; in the warm-up: 42 cudaMalloc 21ms, 15 GEMM plans 95ms")
  T.eq(output.setup_note(nil, {driver_allocs = 0, gemm_plans = 0}), "", "nothing said when there was none (the CPU)")
  T.eq(output.setup_note(nil, {driver_allocs = 3, driver_alloc_ms = 1, gemm_plans = 0, module_loads = 2, module_load_ms = 4.2,
                               graph_builds = 1, graph_build_ms = 30}),
       "; setup in step 1: -; in the warm-up: 3 cudaMalloc 1ms, 0 GEMM plans 0ms, 2 module loads 4ms, 1 graph builds 30ms",
       "module loads and graph builds when there were any")
  T.eq(output.setup_note(nil, {driver_allocs = 3, driver_alloc_ms = 1, gemm_plans = 0, driver_frees = 5, driver_free_ms = 7.4}),
       "; setup in step 1: -; in the warm-up: 3 cudaMalloc 1ms, 0 GEMM plans 0ms, 5 cudaFree 7ms", "cudaFree when there were any")
  T.eq(steps.setup_ms {driver_allocs = 3, driver_alloc_ms = 1, gemm_plans = 2, gemm_plan_ms = 2, driver_frees = 5,
                       driver_free_ms = 4, module_loads = 1, module_load_ms = 0.5, graph_builds = 1, graph_build_ms = 3,
                       gemm_algos_stored = 9, gemm_algos_asked = 8}, 6.5, "the off-the-clock kinds' times, no count, no cudaFree")
  T.eq(output.setup_note(nil, {driver_allocs = 3, driver_alloc_ms = 1, gemm_plans = 18, gemm_plan_ms = 2, gemm_algos_stored = 18}),
       "; setup in step 1: -; in the warm-up: 3 cudaMalloc 1ms, 18 GEMM plans 2ms (18 algorithms from the disk cache)",
       "plans whose algorithm came from the disk cache")
  T.eq(output.setup_note(nil, {driver_allocs = 3, driver_alloc_ms = 1, gemm_plans = 13, gemm_plan_ms = 2, gemm_tunes = 13,
                               gemm_tune_ms = 640.4}),
       "; setup in step 1: -; in the warm-up: 3 cudaMalloc 1ms, 13 GEMM plans 2ms, 13 GEMM plans timed 640ms",
       "the GEMM plans whose algorithms were timed (kernels/matmul.cu)")
  T.eq(steps.setup_ms {gemm_plan_ms = 2, gemm_tune_ms = 640.5, driver_free_ms = 4}, 642.5,
       "the timing of a plan's algorithms comes off the clock, as the plan")
end)

T.done()
