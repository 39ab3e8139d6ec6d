-- speedrun.agent.runner: runs independent jobs (shell command lines) and waits for them.
--   local backend: jobs run concurrently as child processes, one per slot; with GPUs, one slot
--     per GPU and CUDA_VISIBLE_DEVICES set to the slot's GPU for its job; on the CPU, N slots;
--   slurm backend: the jobs go out as one sbatch array (one array task per job), polled with
--     sacct (squeue for liveness), cancelled with scancel.
-- R = runner.new{backend, slots, gpus, dir, poll, sbatch_args, max_parallel}
-- R:run(jobs, hooks) -> results: jobs = {{name, cmd, cwd?, log?}, ...}; results[name] =
-- {state = "COMPLETED"|"FAILED"|"CANCELLED"|"TIMEOUT"|..., rc}; hooks.on_start(job, handle) and
-- hooks.on_done(job, result) are called as jobs start and end (the handle says where the job runs:
-- "local:PID" or "slurm:JOBID_TASK"), R:alive(handle) tells whether a job of an earlier session
-- still runs (a sweep resumed after its own process died waits for it instead of starting the
-- cell twice). docs/agent.md "Running jobs".
local H = require "speedrun.harness_core"
local process = require "speedrun.process"

local M = {}
local fmt = string.format

local sh = require("speedrun.util").shell_quote
M.sh = sh

-- the output of a shell command line (nil when it failed to start)
local function capture(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return nil end
  local s = p:read("a")
  local ok, _, code = p:close()
  return s, ok and 0 or code
end

-- the GPUs of this machine as CUDA_VISIBLE_DEVICES ids ({} on a CPU-only machine): the
-- environment's CUDA_VISIBLE_DEVICES when set, else nvidia-smi's list
function M.gpus()
  local env = os.getenv("CUDA_VISIBLE_DEVICES")
  local out = {}
  if env then
    for id in env:gmatch("[^,%s]+") do out[#out + 1] = id end
    return out
  end
  local s = capture("nvidia-smi --query-gpu=index --format=csv,noheader")
  for id in (s or ""):gmatch("%d+") do out[#out + 1] = id end
  return out
end

local R = {}
R.__index = R

-- opts: backend ("local" | "slurm"), slots (local CPU slots; default: the GPU count, else 1),
-- gpus (a list of ids; default M.gpus(); {} forces the CPU), dir (job scripts and logs, slurm),
-- poll (seconds between polls), sbatch_args (extra sbatch arguments, a list), max_parallel
-- (slurm: the array's %N throttle), max_gpus (local: use at most this many of the GPUs)
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({backend = opts.backend or "local", poll = opts.poll or 0.2, dir = opts.dir,
                             sbatch_args = opts.sbatch_args or {}, max_parallel = opts.max_parallel}, R)
  if self.backend ~= "local" and self.backend ~= "slurm" then
    return nil, "unknown backend '" .. tostring(self.backend) .. "' (local or slurm)"
  end
  if self.backend == "local" then
    local gpus = opts.gpus or M.gpus()
    while opts.max_gpus and #gpus > opts.max_gpus do table.remove(gpus) end
    self.slots = {}
    if #gpus > 0 and not opts.cpu then
      for _, g in ipairs(gpus) do self.slots[#self.slots + 1] = {gpu = g} end
    else
      for _ = 1, opts.slots or 1 do self.slots[#self.slots + 1] = {} end
    end
  else
    if not self.dir then return nil, "the slurm backend needs a folder for its job scripts" end
    for _, tool in ipairs {"sbatch", "sacct", "scancel"} do
      if not capture("command -v " .. tool) or capture("command -v " .. tool) == "" then
        return nil, "the slurm backend needs " .. tool .. " on the PATH"
      end
    end
  end
  return self
end

-- the shell line a job runs: its folder, its command, its output appended to its log
local function job_line(job)
  local line = job.cmd
  if job.log then line = "( " .. line .. " ) >> " .. sh(job.log) .. " 2>&1" end
  if job.cwd then line = "cd " .. sh(job.cwd) .. " && " .. line end
  return line
end
M.job_line = job_line

-- ---------------------------------------------------------------------------------------------
-- local: child processes (each in its own process group), one per free slot

function R:run_local(jobs, hooks)
  local queue, running, results = {}, {}, {}
  for i = #jobs, 1, -1 do queue[#queue + 1] = jobs[i] end
  local interrupted = false
  while #queue > 0 or next(running) do
    for _, slot in ipairs(self.slots) do
      if not slot.proc and #queue > 0 and not interrupted then
        local job = table.remove(queue)
        local env = slot.gpu and {CUDA_VISIBLE_DEVICES = slot.gpu} or nil
        slot.proc, slot.job = process.spawn {argv = {"/bin/sh", "-c", job_line(job)}, env = env}, job
        running[slot] = true
        if hooks.on_start then hooks.on_start(job, "local:" .. slot.proc:pid()) end
      end
    end
    local waited = false
    for slot in pairs(running) do
      slot.proc:read(0)
      local how, code = slot.proc:wait()
      if how then
        local r = how == "exited" and {state = code == 0 and "COMPLETED" or "FAILED", rc = code}
          or {state = "CANCELLED", rc = 128 + code}
        results[slot.job.name] = r
        slot.proc:close()
        running[slot] = nil
        local job = slot.job
        slot.proc, slot.job = nil, nil
        if hooks.on_done then hooks.on_done(job, r) end
        waited = true
      end
    end
    if hooks.interrupted and hooks.interrupted() and not interrupted then
      interrupted, queue = true, {}   -- queued jobs are not started
      for slot in pairs(running) do slot.proc:kill(15) end
    end
    if not waited and next(running) then process.sleep(self.poll) end
  end
  return results
end

-- ---------------------------------------------------------------------------------------------
-- slurm: one sbatch array, task i runs jobs[i + 1]

local TERMINAL = {COMPLETED = true, FAILED = true, CANCELLED = true, TIMEOUT = true, OUT_OF_MEMORY = true,
                  NODE_FAIL = true, PREEMPTED = true, BOOT_FAIL = true, DEADLINE = true, UNKNOWN = true}
M.TERMINAL = TERMINAL

-- the array script for jobs (one `case` branch per array task)
function M.array_script(jobs, opts)
  local L = {"#!/bin/sh", "#SBATCH --job-name=" .. (opts.name or "speedrun"),
             fmt("#SBATCH --array=0-%d%s", #jobs - 1, opts.max_parallel and ("%" .. opts.max_parallel) or ""),
             "#SBATCH --output=" .. opts.dir .. "/slurm-%A_%a.out"}
  L[#L + 1] = 'case "$SLURM_ARRAY_TASK_ID" in'
  for i, job in ipairs(jobs) do L[#L + 1] = fmt("  %d) %s ;;", i - 1, job_line(job)) end
  L[#L + 1] = '  *) echo "no job for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;'
  L[#L + 1] = "esac"
  return table.concat(L, "\n") .. "\n"
end

-- sacct's view of array job id: {[task index] = {state, rc}}
function M.sacct(id)
  local s = capture("sacct -j " .. sh(id) .. " -n -P -X -o JobID,State,ExitCode") or ""
  local out = {}
  for line in s:gmatch("[^\n]+") do
    local jid, state, rc = line:match("^([^|]+)|([^|]*)|([^|]*)")
    local task = jid and jid:match("_(%d+)$")
    if task then
      state = state:match("^(%u[%u_]*)") or state   -- "CANCELLED by 123" -> CANCELLED
      out[tonumber(task)] = {state = state, rc = tonumber(rc:match("^(%d+)")) or 0}
    end
  end
  return out
end

function R:run_slurm(jobs, hooks)
  H.mkdir(self.dir)
  local n = 0
  while io.open(fmt("%s/array-%d.sh", self.dir, n)) do n = n + 1 end
  local script = fmt("%s/array-%d.sh", self.dir, n)
  local f = assert(io.open(script, "w"))
  f:write(M.array_script(jobs, {dir = self.dir, max_parallel = self.max_parallel, name = self.name}))
  f:close()
  local args = {}
  for _, a in ipairs(self.sbatch_args) do args[#args + 1] = sh(a) end
  local out, rc = capture("sbatch --parsable " .. table.concat(args, " ") .. " " .. sh(script))
  local id = out and out:match("^%s*(%d+)")
  if not id then error(fmt("runner: sbatch failed (exit %s): %s", tostring(rc), tostring(out)), 0) end
  for i, job in ipairs(jobs) do
    if hooks.on_start then hooks.on_start(job, fmt("slurm:%s_%d", id, i - 1)) end
  end
  local results, left, cancelled, gone = {}, #jobs, false, 0
  while left > 0 do
    process.sleep(self.poll)
    local states = M.sacct(id)
    -- no accounting (sacct answers nothing): once squeue has not listed the array for 3 polls,
    -- its remaining tasks have ended, how is unknown
    if next(states) == nil then
      gone = (capture("squeue -h -j " .. sh(id) .. " -o %T") or ""):match("%u") and 0 or gone + 1
      if gone >= 3 then
        for i = 0, #jobs - 1 do states[i] = {state = "UNKNOWN", rc = -1} end
      end
    end
    for task, r in pairs(states) do
      local job = jobs[task + 1]
      if job and not results[job.name] and TERMINAL[r.state] then
        results[job.name] = r
        left = left - 1
        if hooks.on_done then hooks.on_done(job, r) end
      end
    end
    if hooks.interrupted and hooks.interrupted() and not cancelled then
      cancelled = true
      os.execute("scancel " .. sh(id))
    end
  end
  return results
end

function R:run(jobs, hooks)
  hooks = hooks or {}
  if #jobs == 0 then return {} end
  if self.backend == "slurm" then return self:run_slurm(jobs, hooks) end
  return self:run_local(jobs, hooks)
end

-- whether a job started in an earlier session (its handle) is still running; marker: a text its
-- command line holds (a local process whose /proc command line lacks it is another process that
-- reused the pid)
function M.alive(handle, marker)
  local kind, id = tostring(handle):match("^(%a+):(.+)$")
  if kind == "local" and id:match("^%d+$") then
    if os.execute("kill -0 " .. id .. " 2>/dev/null") ~= true then return false end
    local f = marker and io.open("/proc/" .. id .. "/cmdline", "rb")
    if f then
      local cmd = f:read("a")
      f:close()
      return cmd:find(marker, 1, true) ~= nil
    end
    return true
  elseif kind == "slurm" then
    local s = capture("squeue -h -j " .. sh(id) .. " -o %T") or ""
    return s:match("%u") ~= nil
  end
  return false
end
R.alive = function(_, handle, marker) return M.alive(handle, marker) end

-- the command lines of this machine's processes but this one ({pid, cmdline with every argument
-- NUL-ended}); zombies' are empty
function M.cmdlines()
  local out, me = {}, tostring(process.getpid())
  for _, name in ipairs(H.listdir("/proc") or {}) do
    if name:match("^%d+$") and name ~= me then
      local f = io.open("/proc/" .. name .. "/cmdline", "rb")
      if f then
        out[#out + 1] = {tonumber(name), (f:read("a") or "") .. "\0"}
        f:close()
      end
    end
  end
  return out
end

-- a process on this machine (not this one) whose command line names the folder dir (a cell's: as an
-- argument, or inside one, e.g. its log in a job's shell line): a job a dead sweep started but had
-- not yet recorded (killed between the start and cell.json), which no handle names. Its pid, or nil.
-- cmdlines: M.cmdlines() taken once for several folders (read now without it).
function M.running_with(dir, cmdlines)
  for _, p in ipairs(cmdlines or M.cmdlines()) do
    local cmd = p[2]
    if cmd:find(dir .. "/", 1, true) or cmd:find(dir .. "\0", 1, true) or cmd:find(dir .. "'", 1, true) then return p[1] end
  end
end

return M
