-- speedrun.harness.graph: one training step, eager or replayed as a CUDA graph, in the child
-- (docs/harness.md "CUDA graphs"). Eager warm-up steps whose launch traces must agree, a
-- capture, one step replayed and then run eagerly from the same state (the eager result is
-- kept), then replays with eager audits; any doubt leaves the run eager, with the reason in
-- results.json's `cuda_graph`.
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local sr = require "speedrun"
local core = require "speedrun.core"
local cuda = require "speedrun.cuda"
local report = require "speedrun.harness.report"
local fuse = require "speedrun.fuse"

local emit, call = report.emit, report.call
local shape_of, trace_start, trace_stop = H.shape, H.trace_start, H.trace_stop
local cuda_graph, log_allocs, is_tensor = cuda.graph, cuda.log_allocs, sr.is_tensor
local fuse_run, fuse_plan, fuse_last, fuse_record, fuse_dry, fuse_lazy = fuse.run, fuse.plan, fuse.last, fuse.record,
  fuse.dry, fuse.lazy
local methods = core.Tensor.methods
local m_item, m_clone, m_copy = methods.item, methods.clone, methods.copy_
local fmt = string.format
local mabs, mmax, mmin = math.abs, math.max, math.min
local xpcall, pcall, error, type, tostring, setmetatable = xpcall, pcall, error, type, tostring, setmetatable
local traceback = debug.traceback

local AUDIT_EVERY = 50     -- replayed steps between eager audits of the step's launches
local FIRST_CAPTURE = 3    -- the earliest capture: after eager step 3, when its trace equals step 2's
local LOSS_RTOL = 1e-5     -- replay vs eager from the same state: the step's loss ...
local PROBE_RTOL = 1e-4    -- ... and the loss of the updated model on the same batch
-- a fused graph's loss: the step compiler's kernels round once where the eager ops round each
-- bf16 intermediate, so its loss differs by bf16 rounding through the network: 0.2e-6 to 9.9e-6
-- (relative) in 23 of 27 proxy runs of records 2-5 on an H200, 2026-12-04; the other 4 failed the
-- 1e-5 check and re-captured unfused, 25-30 % slower (bench/RESULTS.md): a timing lottery. A
-- graph that replays the wrong batch is off by 1e-2 or more; a missed update is the probe's.
local LOSS_RTOL_FUSED = 1e-4

local M = {}

-- stands for the step number while train_step is captured: a captured graph replays whatever
-- train_step computed from it, so any use is an error that makes the trainer stay eager
local function step_used() error("train_step used the step number while being captured into a CUDA graph (each replay would reuse the captured value): compute per-step host values in recipe.schedule(ctx, step) and keep them in device tensors", 2) end
local STEP_SENTINEL = setmetatable({}, {__add = step_used, __sub = step_used, __mul = step_used, __div = step_used,
  __mod = step_used, __pow = step_used, __unm = step_used, __idiv = step_used, __lt = step_used, __le = step_used,
  __concat = step_used, __len = step_used, __index = step_used, __newindex = step_used, __call = step_used,
  __tostring = step_used, __band = step_used, __bor = step_used, __bxor = step_used, __shl = step_used,
  __shr = step_used, __bnot = step_used})

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function rel(a, b) return mabs(a - b) / mmax(1, mabs(b)) end

local function loss_value(l)
  if is_tensor(l) then return m_item(l) end
  return type(l) == "number" and l or nil
end

-- why the run stays eager from the start, or nil
local function eager_reason(o)
  if o.device ~= "cuda" then return "the device is " .. o.device .. " (CUDA graphs need cuda)"
  elseif o.cuda_graph == "off" then return "disabled by --cuda-graph off"
  elseif o.recipe.cuda_graph == false then return "the recipe opts out (recipe.cuda_graph = false)"
  elseif o.skip - 1 < 3 then return fmt("too few warm-up steps to capture before the clock starts (%d; need 4)", o.skip)
  end
end

-- why the captured step is not fused (docs/cuda.md "The step compiler"), or nil
local function fuse_off_reason(o)
  local env = os.getenv("SPEEDRUN_FUSE")
  if env == "0" or env == "off" then return "disabled by SPEEDRUN_FUSE=" .. env
  elseif o.recipe.fuse == false then return "the recipe opts out (recipe.fuse = false)"
  end
end

-- SPEEDRUN_FUSE_EARLY=1 (with the step compiler on; not yet run on a GPU): the plan made before
-- step 1 from a dry run of steps 1-3 (fuse.dry: a forked process that runs no kernel), every eager
-- step run under it with lazy outputs, so no step materialises what the fused graph never stores
-- (records 19-21's f32 softcap: docs/cuda.md "Lazy outputs")
local function early_on()
  local env = os.getenv("SPEEDRUN_FUSE_EARLY")
  return env == "1"
end

-- the plan of recordings a and b, or nil and why; SPEEDRUN_FUSE_LOSS=0/off: no loss groups (to
-- measure what they are worth)
local function plan_of(a, b)
  local lenv = os.getenv("SPEEDRUN_FUSE_LOSS")
  return fuse_plan(a, b, {loss = not (lenv == "0" or lenv == "off")})
end

-- fn(...) under plan, with lazy outputs when `lazy` (fuse.lazy put back after, errors raised again)
local function run_fused(plan, lazy, fn, ...)
  if not lazy then return fuse_run(plan, fn, ...) end
  local old = fuse_lazy(true)
  local r = table.pack(pcall(fuse_run, plan, fn, ...))
  fuse_lazy(old)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- SPEEDRUN_FUSE_DUMP=1 prints the plan to stderr, any other value names a file to write it to
local function dump_plan(plan)
  local to = os.getenv("SPEEDRUN_FUSE_DUMP")
  if not to or to == "" or to == "0" then return end
  local text = plan:dump()
  if to == "1" then io.stderr:write(text) return end
  local f = io.open(to, "w")
  if f then f:write(text) f:close() end
end

local Step = {}
Step.__index = Step

-- o: {ctx, recipe, rules (harness/rules.lua), device, cuda_graph (job option), skip (warm-up steps)};
-- returns the stepper and its results.json record G
function M.new(o)
  local G = {used = false, replays = 0, eager_steps = 0, audits = 0}
  -- eager steps until the first step from FIRST_CAPTURE on whose trace equals the step before's
  -- (not step 1: it creates the optimizer state), at the latest skip - 1; then the capture
  local self = setmetatable({ctx = o.ctx, train_step = o.recipe.train_step, schedule = o.recipe.schedule,
    rules = o.rules, G = G, traces = {}, cap_step = o.skip - 1, first_cap = mmin(FIRST_CAPTURE, o.skip - 1)}, Step)
  G.reason = eager_reason(o)
  if G.reason then emit {ev = "graph", used = false, reason = G.reason} end
  self.want = not G.reason
  self.fuse_why = fuse_off_reason(o)
  self.recs = {}
  self.early = self.want and not self.fuse_why and early_on()
  G.fuse = {used = false, reason = self.fuse_why or json.null}
  return self, G
end

-- the plan's stats and kernels (harness work: held off the clock by the caller), G.fuse filled;
-- the plan, or nil (G.fuse.reason says why)
function Step:fuse_prepare(plan)
  local F = self.G.fuse
  local off, perr = plan:prepare()
  dump_plan(plan)
  local st = plan:stats()
  F.groups, F.launches_saved, F.saved_bytes, F.disabled = st.groups, st.launches_saved, st.saved_bytes, off
  F.loss_groups = st.losses  -- the softcap, the in-place cross-entropy (and its gradient's chain) one kernel
  if perr then F.kernel_error = perr end
  if st.groups == 0 then
    F.reason = "nothing to fuse"
    return nil
  end
  self.plan = plan
  return plan
end

-- SPEEDRUN_FUSE_EARLY: before step 1, steps 1-3 run dry in a forked process on this state (the
-- recipe's code, on the clock; nothing runs on the device and this process's state is untouched),
-- steps 2 and 3 recorded; their plan (its kernels compiled off the clock) then runs every eager
-- step with lazy outputs. Nil when it cannot (G.fuse.early says why); the run goes on as without
function Step:early_plan(batch)
  local F = self.G.fuse
  self.early = false
  local ctx, train_step, schedule = self.ctx, self.train_step, self.schedule
  local r2, r3 = fuse_dry(function()
    local recs = {}
    for s = 1, 3 do
      if schedule then schedule(ctx, s) end
      local rec = s > 1 and fuse_record() or nil
      local loss = train_step(ctx, s, {x = batch.x, y = batch.y, step = s})
      if rec then rec:stop() end
      recs[s], loss = rec, nil
    end
    return recs[2], recs[3]
  end)
  if not r2 then
    F.early = "no dry plan: " .. tostring(r3)
    return nil
  end
  local hold = self.hold or function() end
  hold(true)
  local t0 = H.now()
  local plan, err = plan_of(r2, r3)
  if plan then plan = self:fuse_prepare(plan) else F.early = "no dry plan: " .. tostring(err) end
  F.plan_ms = (H.now() - t0) * 1000
  hold(false)
  if plan then F.early = true end
  return plan
end

-- the early plan while it holds (no disagreement turned the step compiler off since), or nil
function Step:early_in_use()
  return self.early_plan_used and not self.fuse_why and self.plan or nil
end

-- xpcall of train_step(ctx, step, batch) with a traceback, under the early plan with lazy outputs
-- when there is one
function Step:call_step(step, batch)
  local plan = self:early_in_use()
  if not plan then return xpcall(self.train_step, traceback, self.ctx, step, batch) end
  return xpcall(run_fused, traceback, plan, true, self.train_step, self.ctx, step, batch)
end

-- from now on eager, for the reason `why`
function Step:no_graph(why, step)
  self.G.reason = why
  emit {ev = "graph", used = false, step = step, reason = why}
  if self.graph then self.graph:free() end
  self.graph, self.gx, self.gy, self.want = nil, nil, nil, false
end

-- after eager step cap_step: compare its trace with the step before, then capture
function Step:capture(x, y)
  local cap, traces = self.cap_step, self.traces
  local d = traces[cap - 1]:diff(traces[cap])
  if d then return self:no_graph(fmt("the step's kernel arguments changed between steps %d and %d: %s (a host-side value, such as a learning rate, computed in train_step: set it in recipe.schedule through a device tensor)", cap - 1, cap, d), cap) end
  self.gx, self.gy = m_clone(x), m_clone(y)
  local hold = self.hold or function() end
  hold(true)    -- planning the fusion is the harness's own work (no recipe code runs in it)
  local t0 = H.now()
  local plan = self:early_in_use()
  if not plan then
    plan = self:fuse_plan()
    self.G.fuse.plan_ms = (H.now() - t0) * 1000   -- its kernels' NVRTC compiles included (disk cache)
  end
  hold(false)
  local step_fn = self.train_step
  if plan then   -- early: the captured step's unstored outputs never allocated either
    local lazy = self.early_plan_used
    step_fn = function(...) return run_fused(plan, lazy, self.train_step, ...) end
  end
  -- nothing queued runs under the capture (sr_cuda_graph_begin synchronises the stream), so no
  -- GPU work hides under a compile made in it (off the clock: harness/steps.lua)
  local tr = trace_start()
  local ok, g = pcall(cuda_graph, step_fn, self.ctx, STEP_SENTINEL, {x = self.gx, y = self.gy, step = STEP_SENTINEL})
  trace_stop()
  if plan then self:fuse_captured(plan) end
  if not ok then return self:no_graph("capture failed: " .. tostring(g), cap) end
  if not g.captured then
    local why = g.reason
    g:free()
    return self:no_graph("not capturable: " .. tostring(why), cap)
  end
  self.graph = g
  d = traces[cap]:diff(tr)
  if d then return self:no_graph("the captured step differs from the eager one: " .. d, cap) end
  self.ref_trace = traces[cap]
end

-- the plan of the two recorded eager steps before the capture, or nil (G.fuse says why)
function Step:fuse_plan()
  local cap, F = self.cap_step, self.G.fuse
  local a, b = self.recs[cap - 1], self.recs[cap]
  self.recs = {}
  if self.fuse_why or not (a and b) then return nil end
  local plan, err = plan_of(a, b)
  if not plan then
    F.reason = "not planned: " .. tostring(err)
    return nil
  end
  return self:fuse_prepare(plan)
end

-- after a capture with the plan: how it went (a group that ran unfused keeps the graph valid)
function Step:fuse_captured(plan)
  local groups, why = fuse_last()
  local F = self.G.fuse
  F.used, F.groups_fused, F.reason = groups > 0, groups, why or json.null
  emit {ev = "fuse", groups = F.groups, fused = groups, launches_saved = F.launches_saved,
        saved_bytes = F.saved_bytes, loss_groups = F.loss_groups, plan_ms = F.plan_ms, reason = why}
end

-- why the replayed step (loss l_r, probe p_r) and the eager one (l_e, p_e) disagree, or nil;
-- fused: the graph runs the step compiler's kernels (a looser bound on the step's loss)
function M.disagreement(l_r, p_r, l_e, p_e, fused)
  if not (p_r == p_r and p_e == p_e) then return "the model's loss after the step is not finite"
  elseif l_r and l_e and not (rel(l_r, l_e) <= (fused and LOSS_RTOL_FUSED or LOSS_RTOL)) then
    return fmt("the replayed loss %.9g differs from the eager loss %.9g", l_r, l_e)
  elseif not (rel(p_r, p_e) <= PROBE_RTOL) then
    return fmt("after the replayed update the loss on the batch is %.9g, after the eager one %.9g", p_r, p_e)
  end
end

local function oom(err) return tostring(err):find("out of memory", 1, true) ~= nil end

-- out of memory beside the graph, the state put back: the graph goes, the step runs eagerly (its
-- caller's nil, false); a partial eager attempt's time stays on the clock
function Step:unfit(err, step)
  self:no_graph("verification: the captured step's memory and the eager work beside it do not fit on the device (" ..
                tostring(err):match("^[^\n]*") .. ")", step)
  collectgarbage()
  return nil, false
end

-- the graph's snapshot put back and freed
local function put_back(graph)
  graph:restore()
  graph:drop_snapshot()
end

-- the verification's eager step beside the graph: a copy of the state in host memory (none of the
-- device's) kept meanwhile, so that out of memory puts the state back for a run without the graph;
-- returns the step's result, or nil and the error when it did not fit
function Step:eager_beside(step, batch, hold)
  local graph = self.graph
  hold(true)
  local kept = graph:snapshot("host")
  hold(false)
  local ok, le = self:call_step(step, batch)   -- under the early plan (fused, as the graph) when there is one
  if not ok and kept and oom(le) then
    hold(true)
    put_back(graph)
    hold(false)
    return nil, le
  end
  if kept then
    hold(true)
    graph:drop_snapshot()
    hold(false)
  end
  if not ok then error(le, 0) end
  return le
end

-- step cap_step + 1: replay from a snapshot, restore, run eagerly (a host copy of the state kept
-- meanwhile), compare; returns the eager loss and true, or nil and false when there was no
-- snapshot or the graph and the eager step do not fit together
function Step:verify(step, batch)
  local graph, G = self.graph, self.G
  m_copy(self.gx, batch.x)
  m_copy(self.gy, batch.y)
  -- the clock is held (paused) around the harness's own work: the snapshot, the replay that is
  -- undone, the probes
  local hold = self.hold or function() end
  hold(true)
  local bytes, serr = graph:snapshot()
  if not bytes then
    hold(false)
    self:no_graph("verification: " .. tostring(serr), step)
    return nil, false
  end
  local ok, l_r, p_r = pcall(function()
    local lr = graph:replay()
    return is_tensor(lr) and m_item(lr) or nil, self.rules:loss(self.gx, self.gy)
  end)
  put_back(graph)
  hold(false)
  if not ok and oom(l_r) then
    -- the graph's pool holds the captured step's memory while eager work runs beside it (this
    -- probe, the verification's eager step, the audits): records 19-20 at full scale on an H100
    -- do not fit both. The state is the snapshot's again; the run goes on eagerly
    return self:unfit(l_r, step)
  elseif not ok then
    error(l_r, 0)
  end
  -- the probe's tensors in memory the graph lent them (SR_GRAPH_LEND) go back before the eager step
  -- asks for it again (on the clock: a recipe's finalizers may run)
  if graph:lent() > 0 then collectgarbage("collect") end
  local le, unfit = self:eager_beside(step, batch, hold)   -- the eager step may not fit beside the graph either
  if unfit then return self:unfit(unfit, step) end
  G.eager_steps = G.eager_steps + 1
  local l_e = loss_value(le)
  hold(true)
  local p_e = self.rules:loss(self.gx, self.gy)
  hold(false)
  G.verify = {step = step, snapshot_bytes = bytes, probe_diff = rel(p_r, p_e),
              loss_diff = (l_r and l_e) and rel(l_r, l_e) or json.null}
  local why = M.disagreement(l_r, p_r, l_e, p_e, self.G.fuse.used)
  if why and self.G.fuse.used then  -- the fused graph disagrees: capture the step again unfused
    local F = self.G.fuse
    F.used, F.reason = false, "the fused step disagreed with the eager one at step " .. step .. ": " .. why
    emit {ev = "fuse", used = false, reason = F.reason}
    self.fuse_why = F.reason
    graph:free()
    self.graph = nil
    self:capture(self.gx, self.gy)
    return le, true
  elseif why then
    self:no_graph("verification at step " .. step .. " failed: " .. why, step)
  else
    G.used, G.captured_at, self.last_audit = true, self.cap_step, step
    emit {ev = "graph", used = true, step = step, verify = G.verify}
  end
  return le, true
end

-- whether the graph may replay at `step`: no block of its memory lent to eager work beside it
-- (SR_GRAPH_LEND: the verification's step and probes, audits, validation that found no room
-- elsewhere) is in use. Garbage is collected first, on the clock (the recipe's finalizers may run
-- in it: their work is the recipe's); a tensor that still holds one keeps the run eager from here
-- (a replay would overwrite it)
function Step:unlent(step)
  local graph = self.graph
  if graph:lent() == 0 then return true end
  collectgarbage("collect")
  local n = graph:lent()
  if n == 0 then return true end
  self:no_graph(fmt("%d tensor(s) made beside the graph hold memory it lent them (SR_GRAPH_LEND) at step %d: a replay "
                    .. "would overwrite them", n, step), step)
  return false
end

-- a replay on a copy of the batch; returns the loss and the static batch tensors
function Step:replay(x, y)
  m_copy(self.gx, x)
  m_copy(self.gy, y)
  local lr = self.graph:replay()
  self.G.replays = self.G.replays + 1
  return lr, self.gx, self.gy
end

-- an audit: the eager step must issue what the graph replays
function Step:audit(step, tr)
  local G, last = self.G, self.last_audit
  G.audits = G.audits + 1
  local d = self.ref_trace:diff(tr)
  if d then
    G.audit_failed = {step = step, since = last + 1, diff = d}
    self:no_graph(fmt("the audit at step %d found the step's kernel arguments changed since the capture (%s): the graph was dropped; steps %d..%d replayed the captured values", step, d, last + 1, step - 1), step)
  end
  self.last_audit = step
end

-- an eager step, traced before the capture and at audits; returns the loss. The step is captured
-- after the first eager step (from FIRST_CAPTURE) whose launches equal the step before's, so the
-- rest of the warm-up replays; at cap_step (skip - 1) it is tried whatever the traces say (and
-- stays eager, naming the difference, when they differ)
function Step:eager(step, batch)
  if self.early then self.early_plan_used = self:early_plan(batch) ~= nil end
  local tr = (self.want and (step >= self.first_cap - 1 or self.graph)) and trace_start() or nil
  local rec = (tr and not self.graph and not self.fuse_why and not self.early_plan_used) and fuse_record() or nil
  -- a capture may follow: the blocks this step holds are what it will take (cuda.log_allocs)
  local log = tr and not self.graph
  if log then log_allocs(true) end
  local rok, loss = self:call_step(step, batch)
  if log then log_allocs(false) end
  if rec then rec:stop() end  -- after a collection: the loss is still held here
  if tr then trace_stop() end
  if not rok then error(loss, 0) end
  self.G.eager_steps = self.G.eager_steps + 1
  if self.graph then self:audit(step, tr)
  elseif tr then
    self.traces[step] = tr
    self.traces[step - 2] = nil
    self.recs[step], self.recs[step - 2] = rec, nil
    local prev = self.traces[step - 1]
    if step >= self.first_cap and (step >= self.cap_step or (prev and not prev:diff(tr))) then
      self.cap_step = step
      self:capture(batch.x, batch.y)
    end
  end
  return loss
end

-- one training step (schedule, then train_step eager or replayed); returns the loss and the
-- tensors holding the batch the step read
function Step:run(step, x, y)
  if self.schedule then call(self.schedule, self.ctx, step) end
  local batch = {x = x, y = y, step = step}
  if self.graph and not self.G.used then
    local le, done = self:verify(step, batch)
    if done then return le, x, y end
  end
  if self.graph and not same_shape(shape_of(x), shape_of(self.gx)) then
    self:no_graph(fmt("the batch shape changed at step %d (a graph replays fixed shapes)", step), step)
  end
  if self.graph and step - self.last_audit < AUDIT_EVERY and self:unlent(step) then return self:replay(x, y) end
  return self:eager(step, batch), x, y
end

-- frees the graph
function Step:free()
  if self.graph then self.graph:free() end
  self.graph = nil
end

return M
