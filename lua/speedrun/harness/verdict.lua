-- speedrun.harness.verdict: the verdict on one run, in the parent: the one place where what
-- happened (the supervisor's account, the child's result, the rules broken, the limits, the
-- validation loss) becomes `valid` or a failure {kind, message, traceback?} (docs/harness.md
-- "Failure kinds"). The child reports what it saw; it never decides.
local fmt = string.format
local type, tostring = type, tostring

local M = {}

-- the child never reported a result, or was stopped by the supervisor
local function stopped(e)
  if e.killed then return {kind = e.killed, message = e.kill_msg} end
  if e.done then return nil end
  if e.exit_kind == "signaled" then
    return {kind = "crash", message = fmt("the run was killed by signal %d (%s)", e.exit_code, e.exit_name or "?")}
  end
  return {kind = "crash", message = fmt("the run exited with status %s without a result", tostring(e.exit_code))}
end

-- the first rule broken (sandbox violations as the parent saw them, else as the child reported them)
local function first_violation(e)
  local v = e.violations and e.violations[1]
  if v == nil and type(e.done.violations) == "table" then v = e.done.violations[1] end
  return v
end

-- a message without the "rejected: " the sandbox puts in front of its errors (the kind says it)
local function bare(msg)
  msg = tostring(msg)
  return msg:match("^rejected: (.*)$") or msg:match("^[^\n]-: rejected: (.*)$") or msg
end

-- the child's own failure; any broken rule makes the run rejected, whatever else went wrong
local function child_failure(e)
  local f, v = e.done.failure, first_violation(e)
  if type(f) ~= "table" then
    if v then return {kind = "rejected", message = bare(v)} end
    return nil
  end
  if v then
    local then_ = bare(f.message)
    local msg = then_ == bare(v) and then_ or bare(v) .. " (then: " .. then_ .. ")"
    return {kind = "rejected", message = msg, traceback = f.traceback}
  end
  if f.kind == "rejected" then return {kind = "rejected", message = bare(f.message), traceback = f.traceback} end
  return f
end

-- the measurements the child reported, against the GPU memory cap and the wall clock
local function measured(e)
  local m = e.done.metrics
  if type(m) ~= "table" then return nil end
  local gpu_peak, cap = m.peak_gpu_bytes, e.gpu_mem_limit
  if cap and gpu_peak and gpu_peak > cap then
    return {kind = "oom", message = fmt("peak GPU memory %.0f MiB is above the cap of %.0f MiB", gpu_peak / 2 ^ 20, cap / 2 ^ 20)}
  end
  if m.train_time_ms and m.train_time_ms > e.wall_s * 1000 then
    return {kind = "rejected", message = "the measured train time exceeds the run's wall time (clock tampering?)"}
  end
end

-- the final validation loss against the target
local function reached(e)
  local vl = type(e.done.metrics) == "table" and e.done.metrics.val_loss or nil
  if type(vl) ~= "number" then return {kind = "nan", message = "no final validation loss"} end
  if vl > e.target then
    return {kind = "invalid", message = fmt("validation loss %.4f is above the target %.4f", vl, e.target)}
  end
end

-- the verdict: nil for a valid run, else the failure. e: {killed?, kill_msg?, exit_kind?,
-- exit_code?, exit_name? (the supervisor), done? (the child's result), violations (from the
-- child's events), gpu_mem_limit?, wall_s, target? (the target validation loss)}
function M.judge(e)
  return stopped(e) or child_failure(e) or measured(e) or reached(e)
end

return M
