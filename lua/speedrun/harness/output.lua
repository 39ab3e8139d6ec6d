-- speedrun.harness.output: what one run leaves in its output folder and on the terminal, in the
-- parent (docs/harness.md "Commands", "results.json"): log.txt (the harness lines, in the
-- records' format), recipe.log (everything the recipe printed), child.pid, the progress line,
-- results.json and loss.svg (harness/svg.lua). A Log takes the child's events and output
-- (harness/supervise.lua) and keeps what results.json is made of.
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local json = require "speedrun.json"
local svg = require "speedrun.harness.svg"

local fmt = string.format
local M = {}

M.SCHEMA = "speedrun.results/1"

-- a file written whole (through a temporary file and a rename)
function M.write_file(path, s)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(s)
  f:close()
  os.rename(tmp, path)
  return true
end

local function hms(s)
  if not s or s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return fmt("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return fmt("%d:%02d", s // 60, s % 60)
end

-- ============================================================================================
-- progress: one updating status line on a terminal (stderr), lines on stdout

local Progress = {}
Progress.__index = Progress

local function new_progress(quiet)
  return setmetatable({tty = process.isatty(2), quiet = quiet, shown = false}, Progress)
end

function Progress:line(s)
  if self.quiet then return end
  if self.tty and self.shown then io.stderr:write("\r\27[K") end
  io.stdout:write(s, "\n")
  io.stdout:flush()
  self.shown = false
end

function Progress:status(s)
  if self.quiet then return end
  if self.tty then
    io.stderr:write("\r\27[K", s)
    io.stderr:flush()
    self.shown = true
  end
end

function Progress:finish()
  if self.tty and self.shown then io.stderr:write("\r\27[K") io.stderr:flush() end
  self.shown = false
end

-- ============================================================================================
-- the log of one run

local Log = {}
Log.__index = Log

-- the log of job's run in the folder out; t0: the start (H.now())
function M.open(out, job, quiet, t0)
  return setmetatable({out = out, job = job, quiet = quiet, t0 = t0, pr = new_progress(quiet),
    log = io.open(out .. "/log.txt", "w"), rlog = io.open(out .. "/recipe.log", "w"),
    curve = {train = {}, val = {}}, violations = {}, stamps = {}}, Log)
end

-- a harness line: log.txt and the terminal
function Log:line(s)
  self.pr:line(s)
  self.log:write(s, "\n")
  self.log:flush()
end

-- a line the recipe printed: as it is in recipe.log; on the terminal marked as the recipe's, its
-- control characters (carriage returns, escape sequences) removed, so it cannot pass for the
-- harness's own lines (a "verdict: pass" printed by the recipe)
function Log:output(line)
  self.rlog:write(line, "\n")
  self.rlog:flush()
  if not self.quiet then self.pr:line("recipe| " .. line:gsub("[%c]", "")) end
end

-- a long piece of output without a newline
function Log:output_raw(s) self.rlog:write(s) end

function Log:child_pid(pid) M.write_file(self.out .. "/child.pid", tostring(pid) .. "\n") end

local on = {}     -- the child's events, by name

function on.start(self, ev) self.start_ev = ev end

function on.config(self, ev)
  local job, c = self.job, ev.config
  self.cfg_ev = ev
  if self.on_config then self.on_config(ev.scale) end
  local budget = type(c.time_budget_s) == "number" and fmt(", time budget %gs (training stops there)", c.time_budget_s) or ""
  self:line(fmt("recipe %s, scale %s, device %s, seed %d: %d steps of %d tokens, target val loss %.4f on %d tokens%s",
    ev.name or job.recipe, ev.scale, job.device, job.seed, c.steps, c.tokens_per_step, c.target_val_loss, c.val_tokens, budget))
end

function on.step(self, ev)
  self.last_step_ev = ev
  local t = self.curve.train
  t[#t + 1] = {step = ev.step, time_ms = ev.train_time_ms, tokens = ev.tokens, loss = ev.loss}
  local avg = ev.timed_steps > 0 and ev.train_time_ms / ev.timed_steps or 0
  local loss = ev.loss and fmt("%.4f", ev.loss) or "?"
  local line = fmt("step:%d/%d train_loss:%s train_time:%.0fms step_avg:%.2fms", ev.step, ev.steps, loss, ev.train_time_ms, avg)
  self.log:write(line, "\n")
  local every = math.max(1, ev.steps // 20)
  if not self.pr.tty and (ev.step % every == 0 or ev.step == ev.steps) then self.pr:line(line) end
  local tps = ev.wall_ms > 0 and ev.tokens / (ev.wall_ms / 1000) or 0
  local eta = ev.step > 0 and (ev.wall_ms / 1000) * (ev.steps - ev.step) / ev.step or nil
  self.pr:status(fmt("step %d/%d  loss %s  %.0f tok/s  elapsed %s  ETA %s", ev.step, ev.steps, loss, tps,
    hms(H.now() - self.t0), hms(eta)))
end

function on.val(self, ev)
  local v = self.curve.val
  v[#v + 1] = {step = ev.step, time_ms = ev.train_time_ms, tokens = ev.tokens, val_loss = ev.val_loss}
  local timed = self.last_step_ev and self.last_step_ev.timed_steps or 0
  local avg = timed > 0 and ev.train_time_ms / timed or 0
  self:line(fmt("step:%d/%d val_loss:%s train_time:%.0fms step_avg:%.2fms", ev.step, ev.steps,
    ev.val_loss and fmt("%.4f", ev.val_loss) or "nan", ev.train_time_ms, avg))
end

function on.graph(self, ev)
  if ev.used then
    local d = ev.verify.loss_diff
    self:line(fmt("cuda_graph: replaying the step from step %d (verified against eager: loss diff %s, after-update diff %.3g)",
      ev.step + 1, type(d) == "number" and fmt("%.3g", d) or "n/a", ev.verify.probe_diff))
  else
    self:line("cuda_graph: eager" .. (ev.step and fmt(" from step %d", ev.step) or "") .. ": " .. tostring(ev.reason))
  end
end

-- the step compiler at the capture (groups fused) and when a fused graph was dropped (why)
function on.fuse(self, ev)
  if ev.used == false then
    self:line("step compiler: the step runs unfused: " .. tostring(ev.reason))
  elseif type(ev.fused) == "number" then
    self:line(fmt("step compiler: %d of %s groups fused (%s launches fewer%s%s)%s", ev.fused, tostring(ev.groups),
      tostring(ev.launches_saved), (ev.loss_groups or 0) > 0 and fmt("; %d loss group%s", ev.loss_groups, ev.loss_groups > 1 and "s" or "") or "",
      type(ev.plan_ms) == "number" and fmt("; planned and compiled in %.0fms, off the clock", ev.plan_ms) or "",
      type(ev.reason) == "string" and ": " .. ev.reason or ""))
  end
end

function on.violation(self, ev)
  self.violations[#self.violations + 1] = ev.what
  self:line("rule broken: " .. ev.what)
end

function on.done(self, ev) self.done = ev.result end

-- the wall clock (since the spawn) at which the run reached each phase, stamped as its event
-- arrives: start (the child's process and the device up), config (recipe, data and tokenizer
-- read), ready (model and optimizer built), the step-0 validation, the first and last reported
-- steps, validated (the final validation), the final val event (after the checks), done
local function stamp(self, ev)
  local st = self.stamps
  local t = H.now() - self.t0
  local name = ev.ev
  if name == "val" then name = ev.final and "final_val" or (ev.step == 0 and "val0") or nil
  elseif name == "step" then
    st.first_step = st.first_step or t
    name = "last_step"
    st[name] = t
    return
  end
  if name and not st[name] then st[name] = t end
end

-- one event from the child
function Log:event(ev)
  stamp(self, ev)
  local f = on[ev.ev]
  if f then f(self, ev) end
end

-- where a run's wall time went (seconds): spawn to start (process, device), recipe and data
-- (start to config), the model's setup (to ready), the step-0 validation, every step (warm-up
-- included; each event is sent as its step ends), the final validation, the causality and
-- stateless-eval checks, and the rest (exit); nil without the stamps
function M.wall_phases(stamps, wall_s)
  local s = stamps or {}
  if not (s.start and s.config and s.ready and s.last_step and s.validated and s.final_val) then return nil end
  local before = s.val0 or s.ready   -- the steps start after the step-0 validation, when there is one
  return {to_start = s.start, to_config = s.config - s.start, model = s.ready - s.config, val0 = before - s.ready,
          steps = s.last_step - before, final_val = s.validated - s.last_step, checks = s.final_val - s.validated,
          rest = wall_s - s.final_val}
end

-- ============================================================================================
-- results

-- results.json's table, before the verdict. run: the supervisor's account (harness/supervise.lua)
-- and wall_s; opts: the limits of run_one
function M.results(log, run, opts, started_at)
  local job, done = log.job, log.done
  local R = {schema = M.SCHEMA, recipe = job.recipe, workspace = job.workspace, scale = job.scale,
             device = job.device, seed = job.seed, started_at = started_at, wall_time_s = run.wall_s,
             restricted = job.restricted or false, limits = {time_s = opts.time_limit or json.null,
             host_mem_bytes = opts.mem_limit or json.null, gpu_mem_bytes = opts.gpu_mem_limit or json.null},
             software = H.build_info(), host = process.hostname(), log = "log.txt", recipe_log = "recipe.log", svg = "loss.svg",
             checks = {}, violations = json.array(log.violations)}
  R.card = (done and done.card) or (log.start_ev and log.start_ev.card) or H.card(false)
  R.cpu_threads = job.device ~= "cuda" and log.start_ev and log.start_ev.threads or nil   -- a CPU run's time is of them
  if log.cfg_ev then R.scale, R.config, R.name = log.cfg_ev.scale, log.cfg_ev.config, log.cfg_ev.name end
  if done and not run.killed then
    R.metrics, R.checks, R.cuda_graph = done.metrics, done.checks or {}, done.cuda_graph
    local m = R.metrics
    if m and m.val_loss then   -- nulls do not survive the event channel: written explicitly
      for _, k in ipairs {"val_bpb", "val_bytes", "time_budget_s"} do if m[k] == nil then m[k] = json.null end end
    end
  end
  local last = log.last_step_ev
  if not R.metrics and last then
    R.metrics = {steps_done = last.step, train_time_ms = last.train_time_ms, tokens = last.tokens}
  end
  R.metrics = R.metrics or {}
  R.metrics.peak_child_rss_bytes = run.peak_rss > 0 and run.peak_rss or json.null
  R.curve = {train = json.array(log.curve.train), val = json.array(log.curve.val)}
  R.wall_phases_s = M.wall_phases(log.stamps, run.wall_s) or json.null
  return R
end

-- the result line's account of the validation and the training: val_bpb, the budget's stop
local function result_notes(m)
  local bpb = type(m.val_bpb) == "number" and fmt("val_bpb %.4f", m.val_bpb) or "val_bpb n/a"
  local stop = m.stopped_by == "time_budget" and fmt(", stopped by the time budget of %gs at step %d of %d",
    m.time_budget_s, m.steps, m.planned_steps) or ""
  return bpb .. stop
end

-- the verdict's outcome in R; results.json, loss.svg, the result line; closes the log
-- the warm-up line's account of the engine's one-time setup (cudaMalloc, cuBLASLt plans, generated
-- modules loaded, graphs built, GEMM algorithms timed; CUDA runs only): "" when it did none
local SETUP_KINDS = {{"driver_alloc", "cudaMalloc"}, {"gemm_plan", "GEMM plans"}, {"module_load", "module loads"},
                     {"graph_build", "graph builds"}, {"driver_free", "cudaFree"}, {"gemm_tune", "GEMM plans timed"}}
-- one setup_stats reading (or the difference of two) as text: "112 cudaMalloc 7ms, 15 GEMM plans 131ms, ..."
function M.setup_text(x)
  local parts = {}
  for i, k in ipairs(SETUP_KINDS) do
    local n = x[k[1] .. "s"] or 0
    if i <= 2 or n > 0 then parts[#parts + 1] = fmt("%d %s %.0fms", n, k[2], x[k[1] .. "_ms"] or 0) end
    if k[1] == "gemm_plan" and (x.gemm_algos_stored or 0) > 0 then
      parts[#parts] = parts[#parts] .. fmt(" (%d algorithms from the disk cache)", x.gemm_algos_stored)
    end
  end
  return table.concat(parts, ", ")
end

function M.setup_note(first, all)
  if type(all) ~= "table" or ((all.driver_allocs or 0) == 0 and (all.gemm_plans or 0) == 0) then return "" end
  return fmt("; setup in step 1: %s; in the warm-up: %s", type(first) == "table" and M.setup_text(first) or "-", M.setup_text(all))
end

function M.finish(log, R, failure)
  local job, quiet = log.job, log.quiet
  log.pr:finish()
  R.status = failure and failure.kind or "valid"
  R.valid = failure == nil
  R.failure = failure or json.null
  local target = R.config and R.config.target_val_loss
  M.write_file(log.out .. "/results.json", json.encode(R, true) .. "\n")
  svg.write(log.out .. "/loss.svg", {train = log.curve.train, val = log.curve.val, target = target,
    title = fmt("%s (%s, %s, seed %d): %s", R.name or job.recipe, R.scale or "?", job.device, job.seed, R.status)})
  local m = R.metrics
  if type(m.warmup_time_ms) == "number" and m.warmup_time_ms > 0 and type(m.warmup_steps_ms) == "table" then
    local each = {}
    for i, x in ipairs(m.warmup_steps_ms) do each[i] = fmt("%.0f", x) end
    log:line(fmt("warm-up: %d steps in %.0fms (%s), NVRTC %.0fms and engine setup %.0fms off the clock, allowance %.0fms, "
      .. "counted %.0fms%s", #each, m.warmup_time_ms, table.concat(each, " / "), m.warmup_compile_ms or 0,
      m.warmup_setup_ms or 0, m.warmup_allowance_ms or 0, m.warmup_counted_ms or 0,
      M.setup_note(m.first_step_setup, m.warmup_setup)))
  end
  local w = R.wall_phases_s
  if type(w) == "table" then
    log:line(fmt("wall: %.1fs (start %.1f, recipe and data %.1f, model %.1f, step-0 validation %.1f, steps %.1f, "
      .. "final validation %.1f, checks %.1f, exit %.1f)", R.wall_time_s, w.to_start, w.to_config, w.model, w.val0, w.steps,
      w.final_val, w.checks, w.rest))
  end
  if failure then
    local notes = m.val_bpb ~= nil and " (" .. result_notes(m) .. ")" or ""
    log:line(fmt("result: %s: %s%s", failure.kind, failure.message, notes))
    if failure.traceback and not quiet then io.stderr:write(failure.traceback, "\n") end
  else
    log:line(fmt("result: valid: val_loss %.4f <= %.4f in %.0fms of training (%d steps, %.0f tokens/s), %s",
      m.val_loss, target, m.train_time_ms, m.steps, type(m.tokens_per_s) == "number" and m.tokens_per_s or 0, result_notes(m)))
  end
  log.log:close()
  log.rlog:close()
end

return M
