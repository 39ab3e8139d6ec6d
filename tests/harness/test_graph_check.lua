-- The CUDA graph's verification rule (harness/graph.lua M.disagreement): a replayed step must
-- give the eager step's loss from the same state, and the same loss on the batch after its
-- update. A fused graph (the step compiler's kernels round once where eager rounds each bf16
-- intermediate) gets a looser bound on the step's loss only. When the step is captured: after the
-- first eager step from 3 on whose launches equal the step before's, at the latest w - 1. Runs on
-- the CPU (no graph needed: the capture itself is replaced by a stand-in). The update probe's
-- evaluation is bounded to 65,536 tokens of the batch (a full-scale batch's f32 logits are ~100 GB).
-- Out of memory in the verification (its probe, or its eager step beside the graph) drops the
-- graph after restoring the state (eager from there).
local T = require "speedrun.testing"
local graph = require "speedrun.harness.graph"
local dis = graph.disagreement

T.case("graph check: the loss bound, unfused and fused; the update probe bound for both", function()
  local l = 6.8
  -- an unfused graph replays the same kernels: 1e-5 relative (of max(1, |loss|))
  T.eq(dis(l, 5.0, l, 5.0, false), nil, "identical")
  T.eq(dis(l * (1 + 0.5e-5), 5.0, l, 5.0, false), nil, "within 1e-5")
  T.ok(dis(l * (1 + 3e-5), 5.0, l, 5.0, false):find("replayed loss", 1, true), "3e-5 off: refused unfused")
  -- fused: the rounding differences measured on an H200 reach 1e-5; allowed up to 1e-4
  T.eq(dis(l * (1 + 3e-5), 5.0, l, 5.0, true), nil, "3e-5 off: accepted fused")
  T.ok(dis(l * (1 + 3e-4), 5.0, l, 5.0, true):find("replayed loss", 1, true), "3e-4 off: refused even fused")
  T.ok(dis(l * 1.01, 5.0, l, 5.0, true), "a wrong batch (1 % off) is refused")
  -- the probe after the update keeps its bound, fused or not (a missed or partial update)
  for _, fused in ipairs {false, true} do
    T.eq(dis(l, 5.0 * (1 + 5e-5), l, 5.0, fused), nil)
    T.ok(dis(l, 5.0 * (1 + 5e-4), l, 5.0, fused):find("after the replayed update", 1, true), "probe 5e-4 off")
    T.ok(dis(l, 0 / 0, l, 5.0, fused):find("not finite", 1, true), "NaN probe")
  end
  T.eq(dis(nil, 5.0, nil, 5.0, true), nil, "a step that returns no loss: the probe decides")
end)

-- the step at which a stepper over train_step tries its capture (the capture replaced: the CPU has
-- no graphs), with w warm-up steps; nil when it never tried
local function capture_step(train_step, w)
  local sr = require "speedrun"
  local st = graph.new {ctx = {}, recipe = {train_step = train_step}, rules = {}, device = "cuda", skip = w}
  st.fuse_why = "not on the CPU"
  local at
  st.capture = function(self) at = self.cap_step; self.want = false end
  for step = 1, w - 1 do
    st:eager(step, {x = sr.zeros({2}), y = sr.zeros({2}), step = step})
    if at then return at end
  end
  return at
end

T.case("graph capture: after the first eager step (from 3) that repeats the step before's launches", function()
  local sr = require "speedrun"
  local x = sr.randn(4, 8)
  -- f(step): the host number a step scales by (a kernel argument: part of the trace)
  local function make(f) return function(_, step) return sr.F.gelu(x * f(step)):sum() end end
  T.eq(capture_step(make(function() return 2 end), 7), 3, "steady from step 2: captured after step 3")
  T.eq(capture_step(make(function(s) return s < 4 and s or 4 end), 7), 5, "steady from step 4: after step 5")
  T.eq(capture_step(make(function(s) return s end), 7), 6, "never steady: tried at w - 1 (and refused there)")
  T.eq(capture_step(make(function() return 2 end), 4), 3, "w = 4: the only point")
end)

T.case("graph capture: the allocator's log is on for each eager step a capture may follow, off around everything else", function()
  local sr = require "speedrun"
  local cuda = require "speedrun.cuda"
  local real = cuda.log_allocs
  local events = {}
  cuda.log_allocs = function(on) events[#events + 1] = on and "on" or "off" end
  package.loaded["speedrun.harness.graph"] = nil
  local g2 = require "speedrun.harness.graph"   -- takes the stand-in when it loads
  cuda.log_allocs = real
  package.loaded["speedrun.harness.graph"] = graph
  local st = g2.new {ctx = {}, recipe = {train_step = function(_, step)
                       events[#events + 1] = "step " .. step
                       return sr.F.gelu(sr.ones(4) * 2):sum() end},
                     rules = {}, device = "cuda", skip = 7}
  st.fuse_why = "not on the CPU"
  st.capture = function(self)
    events[#events + 1] = "capture"
    self.graph, self.ref_trace, self.last_audit = {}, {diff = function() end}, self.cap_step
  end
  for step = 1, 4 do st:eager(step, {x = sr.zeros({2}), y = sr.zeros({2}), step = step}) end
  -- steps 2 and 3 are traced (the capture's candidates: from first_cap - 1); step 4 has the graph
  T.eq(table.concat(events, ","), "step 1,on,step 2,off,on,step 3,off,capture,step 4")
  -- a step that fails turns the log off before its error goes on
  events = {}
  local bad = g2.new {ctx = {}, recipe = {train_step = function() error("recipe bug", 0) end}, rules = {}, device = "cuda", skip = 7}
  local ok, err = pcall(bad.eager, bad, 2, {x = sr.zeros({2}), y = sr.zeros({2}), step = 2})
  T.ok(not ok and tostring(err):find("recipe bug", 1, true), tostring(err))
  T.eq(table.concat(events, ","), "on,off")
end)

T.case("graph check: the update probe evaluates at most 65,536 tokens of a batch, a flat sequence as one row [1, T]", function()
  local sr = require "speedrun"
  local rules = require "speedrun.harness.rules"
  local seen
  local V = 7
  local function eval(_, x)   -- uniform logits: the mean cross-entropy is ln V on any tokens
    seen = x.shape
    local shape = {table.unpack(x.shape)}
    shape[#shape + 1] = V
    return sr.zeros(table.unpack(shape))
  end
  local r = rules.new({}, eval, nil, {checks = {}}, "cpu", false)
  local cases = {{{4, 16}, {4, 16}}, {{300, 256}, {256, 256}}, {{70000, 2}, {32768, 2}}, {{100000}, {1, 65536}}, {{512}, {1, 512}}}
  for _, c in ipairs(cases) do
    local x = sr.zeros(table.unpack(c[1])):to("int32")
    T.close(r:loss(x, x), math.log(V), 1e-6)
    T.eq(table.concat(seen, "x"), table.concat(c[2], "x"), "eval's input for a batch of " .. table.concat(c[1], "x"))
  end
end)

-- a stand-in for a captured graph (the CPU has none): what verify calls, and whether it was restored;
-- lent: the counts its lent() returns, one a call (then 0)
local function fake_graph(log, lent)
  return {snapshot = function(_, where) log[#log + 1] = where == "host" and "snapshot host" or "snapshot"; return 64 end,
          replay = function() log[#log + 1] = "replay" end,
          lent = function() return lent and table.remove(lent, 1) or 0 end,
          restore = function() log[#log + 1] = "restore" end,
          drop_snapshot = function() log[#log + 1] = "drop" end,
          free = function() log[#log + 1] = "free" end}
end

-- a stepper over a stand-in graph; its train_step logs "eager" and fails with train_err on its first
-- call (the verification's eager step), the update probe fails with probe_err; returns the stepper,
-- the log and a count of train_step's calls
local function stepper(probe_err, train_err)
  local sr = require "speedrun"
  local calls, log = 0, {}
  local st = graph.new {ctx = {}, recipe = {train_step = function()
                          calls = calls + 1
                          log[#log + 1] = "eager"
                          if calls == 1 and train_err then error(train_err, 0) end
                          return sr.tensor({1.0}):sum() end},
                        rules = {loss = function() if probe_err then error(probe_err, 0) end return 2.0 end},
                        device = "cuda", skip = 5}
  st.graph, st.gx, st.gy = fake_graph(log), sr.zeros({2}), sr.zeros({2})
  return st, log, function() return calls end
end

-- verify gave up for lack of device memory (the error naming `bytes`): the caller runs the step eagerly
local function check_unfit(st, le, done, bytes)
  T.eq(le, nil)
  T.eq(done, false, "not verified: the caller runs the step eagerly")
  T.eq(st.graph, nil, "the graph is dropped")
  T.ok(st.G.reason:find("do not fit on the device", 1, true) and st.G.reason:find(bytes, 1, true), st.G.reason)
  T.ok(not st.G.reason:find("traceback", 1, true), "the error's first line, not its traceback")
end

T.case("graph check: the verification's snapshot, undone replay and probes run with the clock held; its eager step on the clock", function()
  local sr = require "speedrun"
  local st, log = stepper()
  st.hold = function(on) log[#log + 1] = on and "hold" or "clock" end
  local le, done = st:verify(4, {x = sr.zeros({2}), y = sr.zeros({2}), step = 4})
  T.ok(le ~= nil and done, "verified")
  T.eq(table.concat(log, ","), "hold,snapshot,replay,restore,drop,clock,hold,snapshot host,clock,eager,hold,drop,clock,hold,clock",
       "the snapshots and their drops inside holds: only the eager step on the clock")
end)

T.case("graph check: out of memory in the verification's probe drops the graph after restoring the state; other errors stop the run", function()
  local sr = require "speedrun"
  local batch = {x = sr.zeros({2}), y = sr.zeros({2}), step = 4}
  local st, log, eager = stepper("cuda: out of memory allocating 13186891776 bytes (11557180416 in use, 71113367552 held from the driver)\nstack traceback:\n\t[C]: in function 'speedrun.core.no_grad'")
  local le, done = st:verify(4, batch)
  check_unfit(st, le, done, "13186891776")
  T.eq(table.concat(log, ","), "snapshot,replay,restore,drop,free", "the replayed update undone before the graph is freed")
  T.eq(eager(), 0, "no eager step inside the failed verification")
  -- the run goes on: the same step eagerly
  local l = st:run(4, batch.x, batch.y)
  T.ok(l ~= nil and eager() == 1, "the step ran eagerly")
  -- any other error of the probe (the recipe's evaluation) is the run's error, after the restore
  local st2, log2 = stepper("recipe: attempt to index a nil value")
  local ok, err = pcall(st2.verify, st2, 4, batch)
  T.ok(not ok and tostring(err):find("attempt to index", 1, true), tostring(err))
  T.eq(table.concat(log2, ","), "snapshot,replay,restore,drop", "restored, not dropped")
end)

T.case("graph check: out of memory in the verification's eager step puts the state back from a host copy, drops the graph and runs the step again eagerly", function()
  local sr = require "speedrun"
  local batch = {x = sr.zeros({2}), y = sr.zeros({2}), step = 4}
  local st, log, calls = stepper(nil, "cuda: out of memory allocating 4294967296 bytes (70000000000 in use, 79000000000 held from the driver)\nstack traceback:\n\t[C]: in function 'speedrun.core.matmul'")
  local le, done = st:verify(4, batch)
  check_unfit(st, le, done, "4294967296")
  T.eq(table.concat(log, ","), "snapshot,replay,restore,drop,snapshot host,eager,restore,drop,free",
       "the state put back from the host copy before the graph is freed")
  local l = st:run(4, batch.x, batch.y)
  T.ok(l ~= nil and calls() == 2, "the step ran again, eagerly")
  -- verified: the host copy is dropped after the eager step, the graph kept
  local st2, log2 = stepper()
  local le2, done2 = st2:verify(4, batch)
  T.ok(le2 ~= nil and done2 == true and st2.graph ~= nil, "verified, the graph kept")
  T.eq(table.concat(log2, ","), "snapshot,replay,restore,drop,snapshot host,eager,drop")
  -- any other error of the eager step is the run's error (the host copy dropped first)
  local st3, log3 = stepper(nil, "recipe: attempt to call a nil value")
  local ok, err = pcall(st3.verify, st3, 4, batch)
  T.ok(not ok and tostring(err):find("attempt to call", 1, true), tostring(err))
  T.eq(table.concat(log3, ","), "snapshot,replay,restore,drop,snapshot host,eager,drop")
end)

T.case("graph check: memory the graph lent to eager work (SR_GRAPH_LEND) is free before a replay, else the run goes on eagerly", function()
  local sr = require "speedrun"
  local batch = {x = sr.zeros({2}), y = sr.zeros({2}), step = 4}
  -- verified, then lent blocks in use at step 5: garbage collected (on the clock: finalizers are the
  -- recipe's code), then free: replayed
  local st, log = stepper()
  T.ok(select(2, st:verify(4, batch)), "verified")
  st.graph = fake_graph(log, {2, 0})
  st.hold = function(on) log[#log + 1] = on and "hold" or "clock" end
  for i = #log, 1, -1 do log[i] = nil end
  st:run(5, batch.x, batch.y)
  T.eq(table.concat(log, ","), "replay", "collected on the clock, then replayed")
  -- still in use after the collection: the graph goes, the step runs eagerly, the reason says why
  local st2, log2 = stepper()
  st2:verify(4, batch)
  st2.graph = fake_graph(log2, {1, 1})
  for i = #log2, 1, -1 do log2[i] = nil end
  local l = st2:run(5, batch.x, batch.y)
  T.ok(l ~= nil and st2.graph == nil, "the step ran eagerly, the graph dropped")
  T.eq(table.concat(log2, ","), "free,eager", "no replay")
  T.ok(st2.G.reason:find("hold memory it lent them", 1, true) and st2.G.reason:find("step 5", 1, true), st2.G.reason)
  -- the verification's probe held lent memory: collected before the eager step asks for memory
  local st3, log3 = stepper()
  st3.graph = fake_graph(log3, {1})
  local gc = collectgarbage
  collectgarbage = function(...) log3[#log3 + 1] = "gc" return gc(...) end
  local ok, le, done = pcall(st3.verify, st3, 4, batch)
  collectgarbage = gc   -- the global again
  T.ok(ok and le ~= nil and done, tostring(le))
  T.eq(table.concat(log3, ","), "snapshot,replay,restore,drop,gc,snapshot host,eager,drop")
end)


-- SPEEDRUN_FUSE_EARLY (st.early here): record 19's micro step, its plan made before step 1 from a
-- dry run of steps 1-3 in a forked process; every eager step then runs under it with lazy outputs,
-- with the same numbers and a lower peak than the unfused step (the capture stubbed: the CPU has
-- no graphs). The dry steps leave this process's state alone: step 1 still creates the optimizer's
-- state here (the plan then stops matching at its first new launch; the rest of step 1 unfused).
T.case("graph check: the early plan (SPEEDRUN_FUSE_EARLY): dry steps 1-3 planned before step 1, then eager steps fused and lazy", function()
  local sr = require "speedrun"
  local util = require "speedrun.util"
  local recipe = assert(util.load_recipe("../tasks/record_19/recipe.lua"))
  local function run(early)
    local ctx = assert(util.recipe_context(recipe, "micro", "cpu", 7))
    local cfg = ctx.config
    sr.manual_seed(3)
    local x, y = util.random_batch(cfg, {cfg.batch.T})
    local st = graph.new {ctx = ctx, recipe = recipe, rules = {}, device = "cuda", skip = 7}
    st.early = early
    st.capture = function(self) self.want = false end
    local out = {}
    for step = 1, 3 do
      if recipe.schedule then recipe.schedule(ctx, step) end
      collectgarbage(); collectgarbage()
      local base = sr.memory().current
      sr.reset_peak_memory()
      out[step] = {loss = st:eager(step, {x = x, y = y, step = step}):item(), peak = sr.memory().peak - base,
                   groups = require("speedrun.fuse").last()}
    end
    return out, st
  end
  local off = run(false)
  local on, st = run(true)
  T.eq(st.G.fuse.early, true, "planned early: " .. tostring(st.G.fuse.early))
  T.ok(st.G.fuse.groups > 0 and st.G.fuse.loss_groups == 1, "the plan's groups, its loss group")
  for step = 1, 3 do
    T.eq(on[step].loss, off[step].loss, "step " .. step .. ": the loss bit for bit")
    T.ok(on[step].groups > 0, "step " .. step .. ": groups ran fused")
    -- step 1's peak is the optimizer's new state at this scale (the same either way); then lower
    local ok = step == 1 and on[step].peak <= off[step].peak or on[step].peak < off[step].peak
    T.ok(ok, ("step %d: peak %d bytes early, %d unfused"):format(step, on[step].peak, off[step].peak))
  end
  -- a step the dry run cannot make (it reads a value on the host): no early plan, the run as before
  local ctx = assert(util.recipe_context(recipe, "micro", "cpu", 7))
  local reads = {train_step = function(c, s, b) local l = recipe.train_step(c, s, b); l:item(); return l end}
  local st2 = graph.new {ctx = ctx, recipe = reads, rules = {}, device = "cuda", skip = 7}
  st2.early = true
  st2.capture = function(self) self.want = false end
  local x, y = util.random_batch(ctx.config, {ctx.config.batch.T})
  st2:eager(1, {x = x, y = y, step = 1})
  T.ok(tostring(st2.G.fuse.early):find("touched a tensor's memory outside a kernel", 1, true), tostring(st2.G.fuse.early))
  T.eq(st2.plan, nil)
end)

T.done()
