-- speedrun.harness.supervise: supervision of the child process of one run, in the parent
-- (docs/harness.md "Isolation"). The child is `speedrun _child JOB.json` (fork + exec of this
-- binary, own process group); its stdout/stderr and its event channel (fd 3) are read as lines
-- without ever blocking on it, and it is killed when it passes its limits: wall time, host
-- memory (RLIMIT_AS on CPU runs, resident size polled always), or when the harness is
-- interrupted. SIGTERM first, SIGKILL 2 s later.
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local json = require "speedrun.json"

local fmt = string.format
local M = {}

local POLL_S = 0.2          -- the longest wait for the child's output
local RSS_EVERY_S = 0.5     -- resident-size polling
local GRACE_S = 2           -- SIGTERM to SIGKILL; and reading after the exit

-- Engine switches: environment variables that change which kernels run or how (the A/B and opt-in
-- kernel switches SR_*, TF32, the step compiler, CUDA graphs, the allocator and caches, the
-- engine's own kernel headers, debug records; the OpenMP runtime's settings, OMP_* and GOMP_*: a
-- CPU run's threads are --threads or every core; and the CUDA driver's and libraries' own settings
-- that change how the same kernels run or what they cost, M.DRIVER_SWITCHES: synchronous launches,
-- eager or lazy module loading, PTX JIT and its cache, TF32 forced on or off in cuBLAS, the
-- libraries' logging). A run whose time is compared with others (restricted:
-- score; cold caches: calibrate and the tuner's confirmations) runs the default engine whatever the
-- shell it was started from holds: its child gets them removed (results.json names them). Every
-- variable the engine reads is either a switch or configuration (M.ENGINE_CONFIG: where things are,
-- which device, the harness's own settings); tests/harness/test_engine_env.lua checks the sources.
M.SWITCH_PREFIXES = {"SR_", "OMP_", "GOMP_"}
M.ENGINE_SWITCHES = {SPEEDRUN_TF32 = true, SPEEDRUN_FUSE = true, SPEEDRUN_FUSE_LOSS = true, SPEEDRUN_FUSE_DUMP = true,
  SPEEDRUN_FUSE_LAZY = true, SPEEDRUN_FUSE_EARLY = true,
  SPEEDRUN_NO_GRAPHS = true, SPEEDRUN_KERNEL_SYNC = true, SPEEDRUN_KERNEL_RECORD = true, SPEEDRUN_MEMLOG = true,
  SPEEDRUN_CUDA_SEGMENTS = true, SPEEDRUN_HOST_CACHE = true, SPEEDRUN_GEMM_CACHE = true, SPEEDRUN_KERNEL_INCLUDE = true,
  -- the backward pass's gradient routing (core/autograd.c's fusion_env table)
  SPEEDRUN_GRAD_SLICES = true, SPEEDRUN_GRAD_CAST_GEMM = true, SPEEDRUN_GRAD_RECOMPUTE = true, SPEEDRUN_GRAD_SCALE = true,
  SPEEDRUN_GRAD_ACCUM = true, SPEEDRUN_GRAD_DEFER = true}
M.ENGINE_CONFIG = {SPEEDRUN_HOME = true, SPEEDRUN_DATA = true, SPEEDRUN_NO_CUDA = true, SPEEDRUN_DEVICE = true,
  SPEEDRUN_SOURCE_DIR = true, SPEEDRUN_RUNS_DIR = true, SPEEDRUN_TEST_TMP = true, SPEEDRUN_GPT2_DIR = true,
  SPEEDRUN_DEBS = true, SPEEDRUN_CALIBRATION = true, SPEEDRUN_AGENT_SCAFFOLDS = true, SPEEDRUN_CUDA_INCLUDE = true,
  SPEEDRUN_HARNESS_CHILD = true, SPEEDRUN_KERNEL_CACHE = true, SPEEDRUN_CUDA_MEM_LIMIT = true, SPEEDRUN_JIT_THREADS = true,
  SPEEDRUN_HOST_REACH = true}   -- (=1: the GPU taken to reach host memory; it can only refuse agent kernels)
M.DRIVER_SWITCHES = {CUDA_LAUNCH_BLOCKING = true, CUDA_MODULE_LOADING = true, CUDA_MODULE_DATA_LOADING = true,
  CUDA_FORCE_PTX_JIT = true, CUDA_DISABLE_PTX_JIT = true, CUDA_CACHE_DISABLE = true, CUDA_CACHE_PATH = true,
  CUDA_CACHE_MAXSIZE = true, CUDA_DEVICE_MAX_CONNECTIONS = true, CUDA_AUTO_BOOST = true, NVIDIA_TF32_OVERRIDE = true,
  CUBLAS_WORKSPACE_CONFIG = true, CUBLASLT_LOG_LEVEL = true, CUBLASLT_LOG_MASK = true, CUBLASLT_LOG_FILE = true,
  CUBLAS_LOGINFO_DBG = true, CUBLAS_LOGDEST_DBG = true, CUBLASLT_HEURISTICS_CACHE_CAPACITY = true,
  CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = true}   -- (under an MPS server: the share of the SMs a client gets)
function M.is_switch(name)
  for _, p in ipairs(M.SWITCH_PREFIXES) do
    if name:sub(1, #p) == p then return true end
  end
  return M.ENGINE_SWITCHES[name] == true or M.DRIVER_SWITCHES[name] == true
end

-- the child's environment changes for the job (names: the parent's variables, default this
-- process's); returns them and the switches it removes
function M.child_env(job, opts, names)
  local env = {SPEEDRUN_HARNESS_CHILD = "1"}
  if opts.gpu_mem_limit then env.SPEEDRUN_CUDA_MEM_LIMIT = tostring(opts.gpu_mem_limit) end
  if job.kernel_cache then env.SPEEDRUN_KERNEL_CACHE = job.kernel_cache end   -- restricted: the run's own (cli.run_one)
  if job.cuda_cache then env.CUDA_CACHE_PATH = job.cuda_cache end
  local removed = {}
  if job.restricted or job.cold_caches then
    for _, n in ipairs(names or process.environ_names()) do
      if M.is_switch(n) and env[n] == nil then
        env[n] = false
        removed[#removed + 1] = n
      end
    end
    table.sort(removed)
  end
  return env, removed
end

-- the child process of the job, and the engine switches its environment lost
local function spawn(job, jobfile, opts)
  local env, removed = M.child_env(job, opts)
  local as_limit = job.device == "cpu" and opts.mem_limit or nil
  return process.spawn {argv = {H.self_exe(), "_child", jobfile}, env = env, as_limit = as_limit, cwd = job.workspace}, removed
end

-- splits the child's output into lines for the sink: sink:event(ev) for the event channel,
-- sink:output(line) and sink:output_raw(s) for stdout and stderr
local function reader(sink)
  local bufs = {stdout = "", stderr = "", events = ""}
  local function feed(stream, s)
    local buf = bufs[stream] .. s
    while true do
      local nl = buf:find("\n", 1, true)
      if not nl then break end
      local line = buf:sub(1, nl - 1)
      buf = buf:sub(nl + 1)
      if stream == "events" then
        local ev = json.decode(line)
        if type(ev) == "table" then sink:event(ev) end
      else
        sink:output(line)
      end
    end
    if #buf > 1 << 20 and stream ~= "events" then sink:output_raw(buf) buf = "" end
    bufs[stream] = buf
  end
  local function flush()
    for s, rest in pairs(bufs) do if #rest > 0 then feed(s, rest .. "\n") end end
  end
  return feed, flush
end

-- why the child must be stopped now (kind, message), or nil
local function over_limits(s, opts)
  local sig = process.interrupted()
  if sig then return "crash", fmt("interrupted: the harness got signal %d and stopped the run", sig) end
  if opts.time_limit and H.now() - s.t0 > opts.time_limit then
    return "timeout", fmt("the run exceeded its wall-time limit of %gs and was killed", opts.time_limit)
  end
  if H.now() - s.last_rss_check > RSS_EVERY_S and not s.exit_kind then
    s.last_rss_check = H.now()
    local rss = s.p:rss()
    if rss > s.peak_rss then s.peak_rss = rss end
    if opts.mem_limit and rss > opts.mem_limit then
      return "oom", fmt("the run used %.0f MiB of host memory, above its limit of %.0f MiB, and was killed",
                        rss / 2 ^ 20, opts.mem_limit / 2 ^ 20)
    end
  end
end

-- limits and kills after one poll; true when supervision is over
local function police(s, opts)
  local p = s.p
  if not s.killed then
    s.killed, s.kill_msg = over_limits(s, opts)
    if s.killed then
      s.kill_at = H.now()
      p:kill(15)
    end
  elseif not s.exit_kind and H.now() - s.kill_at > GRACE_S then
    p:kill(9)
  end
  -- a child that exited but left its pipes open (a grandchild): stop reading after 2 s
  if s.exit_kind then
    s.kill_at = s.kill_at or H.now()
    if H.now() - s.kill_at > GRACE_S then p:kill(9) return true end
  end
  return false
end

-- runs the job's child until it is gone, feeding its output to sink (see reader); t0: the start
-- (H.now()). Returns {killed?, kill_msg?, exit_kind?, exit_code?, exit_name?, peak_rss,
-- engine_switches_removed}
function M.run(job, jobfile, opts, sink, t0)
  local p, removed = spawn(job, jobfile, opts)
  sink:child_pid(p:pid())
  local s = {p = p, t0 = t0, last_rss_check = 0, peak_rss = 0}
  local feed, flush = reader(sink)
  while true do
    for _, chunk in ipairs(p:read(POLL_S)) do feed(chunk[1], chunk[2]) end
    if not s.exit_kind then
      local k, c, n = p:wait()
      if k then s.exit_kind, s.exit_code, s.exit_name = k, c, n end
    end
    if s.exit_kind and not p:open() then break end
    if police(s, opts) then break end
  end
  flush()
  return {killed = s.killed, kill_msg = s.kill_msg, exit_kind = s.exit_kind, exit_code = s.exit_code,
          exit_name = s.exit_name, peak_rss = s.peak_rss, engine_switches_removed = removed}
end

return M
