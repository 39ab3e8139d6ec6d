-- speedrun.harness.cli: `speedrun train`, `speedrun score`, `speedrun calibrate` (the parent side).
-- Each recipe run is a child process (`speedrun _child JOB.json`, see harness/child.lua)
-- supervised here: wall-time limit, host-memory limit (RLIMIT_AS on CPU runs, resident-size
-- polling always), GPU-memory cap (SPEEDRUN_CUDA_MEM_LIMIT for the allocator, and the measured
-- peak), a result with a failure kind whatever happens to the child. See docs/harness.md.
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local stats = require "speedrun.stats"
local svg = require "speedrun.harness.svg"
local sr = require "speedrun"
local lsr_data = require "speedrun.data"

local M = {}
local fmt = string.format
M.SCHEMA = "speedrun.results/1"
M.SCORE_SCHEMA = "speedrun.score/1"
M.CALIBRATION_SCHEMA = "speedrun.calibration/1"

-- default wall-time limits per scale, seconds (the benchmark's job_ttl is 60 minutes)
M.TIME_LIMITS = {micro = 600, demo = 1800, proxy = 3600, full = 3600}

local function die(msg, code)
  io.stderr:write("speedrun: ", msg, "\n")
  return code or 2
end

local function parse_size(s)
  if not s then return nil end
  local n, unit = tostring(s):match("^([%d%.]+)%s*([kKmMgGtT]?)[iI]?[bB]?$")
  if not n then return nil end
  local mult = ({[""] = 1, k = 2 ^ 10, m = 2 ^ 20, g = 2 ^ 30, t = 2 ^ 40})[unit:lower()]
  return math.floor(tonumber(n) * mult)
end

-- options: {name = {kind = "value"|"flag", ...}}; returns opts, positional | nil, msg
local function parse_args(args, spec)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a:sub(1, 2) == "--" then
      local name, val = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local kind = spec[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then opts[name] = true
      else
        if not val then
          i = i + 1
          val = args[i]
          if not val then return nil, "option --" .. name .. " needs a value" end
        end
        opts[name] = val
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local function mkdir_p(path)
  local ok, err = H.mkdir(path)
  if not ok then error("cannot create " .. path .. ": " .. tostring(err), 0) end
end

local read_file = require("speedrun.util").read_file

local function write_file(path, s)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(s)
  f:close()
  os.rename(tmp, path)
  return true
end

local function abspath(p)
  return H.realpath(p) or p
end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

local function iso_now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

local function software() return H.build_info() end

-- data: a corpus name (default, tiny, fineweb10B) or a folder holding *_train_*.bin / *_val_*.bin
local function data_patterns(data)
  if data:find("/") or exists(data .. "/.") then
    local d = abspath(data)
    return d .. "/*train_*.bin", d .. "/*val_*.bin", d
  end
  return lsr_data.files(data, "train"), lsr_data.files(data, "val"), abspath(lsr_data.dir()) .. "/" .. data
end

local function glob_nonempty(pattern)
  local ld = lsr_data.loader {files = pattern, mode = "seq", T = 1}
  return ld ~= nil
end

-- ============================================================================================
-- one supervised run

local Progress = {}
Progress.__index = Progress

local function new_progress(quiet)
  return setmetatable({tty = H.isatty(2), quiet = quiet, shown = false, last_plain = 0}, Progress)
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

local function hms(s)
  if not s or s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return fmt("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return fmt("%d:%02d", s // 60, s % 60)
end

-- run_one(job, opts) -> result (also written to job.out/results.json)
-- opts: time_limit (s), mem_limit (bytes), gpu_mem_limit (bytes), quiet, label
function M.run_one(job, opts)
  mkdir_p(job.out)
  local out = abspath(job.out)
  job.out = out
  local jobfile = out .. "/job.json"
  write_file(jobfile, json.encode(job, true))
  local log = io.open(out .. "/log.txt", "w")
  local rlog = io.open(out .. "/recipe.log", "w")
  local pr = new_progress(opts.quiet)
  local env = {SPEEDRUN_HARNESS_CHILD = "1"}
  if opts.gpu_mem_limit then env.SPEEDRUN_CUDA_MEM_LIMIT = tostring(opts.gpu_mem_limit) end
  local as_limit = job.device == "cpu" and opts.mem_limit or nil
  local t0 = H.now()
  local started_at = iso_now()
  local p = H.spawn {argv = {H.self_exe(), "_child", jobfile}, env = env, as_limit = as_limit, cwd = job.workspace}
  write_file(out .. "/child.pid", tostring(p:pid()) .. "\n")

  local curve = {train = {}, val = {}}
  local done, cfg_ev, start_ev
  local violations = {}
  local killed, kill_msg
  local bufs = {stdout = "", stderr = "", events = ""}
  local last_rss_check = 0
  local peak_rss = 0
  local steps_total, last_step_ev
  local function logline(s)
    pr:line(s)
    log:write(s, "\n")
    log:flush()
  end

  local function on_event(ev)
    if ev.ev == "start" then start_ev = ev
    elseif ev.ev == "config" then
      cfg_ev = ev
      steps_total = ev.config.steps
      logline(fmt("recipe %s, scale %s, device %s, seed %d: %d steps of %d tokens, target val loss %.4f on %d tokens",
        ev.name or job.recipe, ev.scale, job.device, job.seed, ev.config.steps, ev.config.tokens_per_step,
        ev.config.target_val_loss, ev.config.val_tokens))
    elseif ev.ev == "step" then
      last_step_ev = ev
      curve.train[#curve.train + 1] = {step = ev.step, time_ms = ev.train_time_ms, tokens = ev.tokens, loss = ev.loss}
      local avg = ev.timed_steps > 0 and ev.train_time_ms / ev.timed_steps or 0
      local line = fmt("step:%d/%d train_loss:%s train_time:%.0fms step_avg:%.2fms", ev.step, ev.steps,
                       ev.loss and fmt("%.4f", ev.loss) or "?", ev.train_time_ms, avg)
      log:write(line, "\n")
      local every = math.max(1, ev.steps // 20)
      if not pr.tty and (ev.step % every == 0 or ev.step == ev.steps) then pr:line(line) end
      local tps = ev.wall_ms > 0 and ev.tokens / (ev.wall_ms / 1000) or 0
      local eta = ev.step > 0 and (ev.wall_ms / 1000) * (ev.steps - ev.step) / ev.step or nil
      pr:status(fmt("step %d/%d  loss %s  %.0f tok/s  elapsed %s  ETA %s", ev.step, ev.steps,
        ev.loss and fmt("%.4f", ev.loss) or "?", tps, hms(H.now() - t0), hms(eta)))
    elseif ev.ev == "val" then
      curve.val[#curve.val + 1] = {step = ev.step, time_ms = ev.train_time_ms, tokens = ev.tokens, val_loss = ev.val_loss}
      local timed = last_step_ev and last_step_ev.timed_steps or 0
      local avg = timed > 0 and ev.train_time_ms / timed or 0
      logline(fmt("step:%d/%d val_loss:%s train_time:%.0fms step_avg:%.2fms", ev.step, ev.steps,
        ev.val_loss and fmt("%.4f", ev.val_loss) or "nan", ev.train_time_ms, avg))
    elseif ev.ev == "graph" then
      if ev.used then
        logline(fmt("cuda_graph: replaying the step from step %d (verified against eager: loss diff %s, after-update diff %.3g)",
          ev.step + 1, type(ev.verify.loss_diff) == "number" and fmt("%.3g", ev.verify.loss_diff) or "n/a", ev.verify.probe_diff))
      else
        logline("cuda_graph: eager" .. (ev.step and fmt(" from step %d", ev.step) or "") .. ": " .. tostring(ev.reason))
      end
    elseif ev.ev == "violation" then
      violations[#violations + 1] = ev.what
      logline("rule broken: " .. ev.what)
    elseif ev.ev == "done" then done = ev.result
    end
  end

  local function feed(stream, dataa)
    local buf = bufs[stream] .. dataa
    while true do
      local nl = buf:find("\n", 1, true)
      if not nl then break end
      local line = buf:sub(1, nl - 1)
      buf = buf:sub(nl + 1)
      if stream == "events" then
        local ev = json.decode(line)
        if type(ev) == "table" then on_event(ev) end
      else
        rlog:write(line, "\n")
        rlog:flush()
        if not opts.quiet then pr:line(line) end
      end
    end
    if #buf > 1 << 20 and stream ~= "events" then rlog:write(buf) buf = "" end
    bufs[stream] = buf
  end

  local exit_kind, exit_code, exit_name
  local kill_at
  while true do
    for _, chunk in ipairs(p:read(0.2)) do feed(chunk[1], chunk[2]) end
    if not exit_kind then
      local k, c, n = p:wait()
      if k then exit_kind, exit_code, exit_name = k, c, n end
    end
    if exit_kind and not p:open() then break end
    if exit_kind and H.now() - (kill_at or t0) > 1e9 then break end
    local elapsed = H.now() - t0
    if not killed then
      local sig = H.interrupted()
      if sig then
        killed, kill_msg = "crash", fmt("interrupted: the harness got signal %d and stopped the run", sig)
      elseif opts.time_limit and elapsed > opts.time_limit then
        killed, kill_msg = "timeout", fmt("the run exceeded its wall-time limit of %gs and was killed", opts.time_limit)
      elseif H.now() - last_rss_check > 0.5 and not exit_kind then
        last_rss_check = H.now()
        local rss = p:rss()
        if rss > peak_rss then peak_rss = rss end
        if opts.mem_limit and rss > opts.mem_limit then
          killed, kill_msg = "oom", fmt("the run used %.0f MiB of host memory, above its limit of %.0f MiB, and was killed",
                                        rss / 2 ^ 20, opts.mem_limit / 2 ^ 20)
        end
      end
      if killed then
        kill_at = H.now()
        p:kill(15)
      end
    elseif not exit_kind and H.now() - kill_at > 2 then
      p:kill(9)
    end
    -- a child that exited but left its pipes open (a grandchild): stop reading after 2 s
    if exit_kind then
      kill_at = kill_at or H.now()
      if H.now() - kill_at > 2 then p:kill(9) break end
    end
  end
  for s, rest in pairs(bufs) do if #rest > 0 then feed(s, rest .. "\n") end end
  pr:finish()
  local wall = H.now() - t0

  -- the result
  local R = {schema = M.SCHEMA, recipe = job.recipe, workspace = job.workspace, scale = job.scale,
             device = job.device, seed = job.seed, started_at = started_at, wall_time_s = wall,
             restricted = job.restricted or false, limits = {time_s = opts.time_limit or json.null,
             host_mem_bytes = opts.mem_limit or json.null, gpu_mem_bytes = opts.gpu_mem_limit or json.null},
             software = software(), host = H.hostname(), log = "log.txt", recipe_log = "recipe.log", svg = "loss.svg",
             checks = {}, violations = json.array(violations)}
  R.card = (done and done.card) or (start_ev and start_ev.card) or H.card(false)
  if cfg_ev then R.scale, R.config, R.name = cfg_ev.scale, cfg_ev.config, cfg_ev.name end
  local failure
  if killed then
    failure = {kind = killed, message = kill_msg}
  elseif done then
    R.metrics = done.metrics
    R.checks = done.checks or {}
    R.cuda_graph = done.cuda_graph
    if done.failure then failure = done.failure end
  elseif exit_kind == "signaled" then
    failure = {kind = "crash", message = fmt("the run was killed by signal %d (%s)", exit_code, exit_name or "?")}
  else
    failure = {kind = "crash", message = fmt("the run exited with status %s without a result", tostring(exit_code))}
  end
  if not failure and R.metrics then
    local gpu_peak = R.metrics.peak_gpu_bytes
    if opts.gpu_mem_limit and gpu_peak and gpu_peak > opts.gpu_mem_limit then
      failure = {kind = "oom", message = fmt("peak GPU memory %.0f MiB is above the cap of %.0f MiB", gpu_peak / 2 ^ 20, opts.gpu_mem_limit / 2 ^ 20)}
    elseif R.metrics.train_time_ms and R.metrics.train_time_ms > wall * 1000 then
      failure = {kind = "rejected", message = "the measured train time exceeds the run's wall time (clock tampering?)"}
    end
  end
  if not failure and #violations > 0 then failure = {kind = "rejected", message = "rejected: " .. violations[1]} end
  if not R.metrics and last_step_ev then
    R.metrics = {steps_done = last_step_ev.step, train_time_ms = last_step_ev.train_time_ms, tokens = last_step_ev.tokens}
  end
  R.metrics = R.metrics or {}
  R.metrics.peak_child_rss_bytes = peak_rss > 0 and peak_rss or json.null
  local target = R.config and R.config.target_val_loss
  if not failure then
    local vl = R.metrics.val_loss
    if type(vl) ~= "number" then failure = {kind = "nan", message = "no final validation loss"}
    elseif vl > target then
      failure = {kind = "invalid", message = fmt("validation loss %.4f is above the target %.4f", vl, target)}
    end
  end
  R.status = failure and failure.kind or "valid"
  R.valid = failure == nil
  R.failure = failure or json.null
  R.curve = {train = json.array(curve.train), val = json.array(curve.val)}
  write_file(out .. "/results.json", json.encode(R, true) .. "\n")
  svg.write(out .. "/loss.svg", {train = curve.train, val = curve.val, target = target,
    title = fmt("%s (%s, %s, seed %d): %s", R.name or job.recipe, R.scale or "?", job.device, job.seed, R.status)})
  if failure then
    logline(fmt("result: %s: %s", failure.kind, failure.message))
    if failure.traceback and not opts.quiet then io.stderr:write(failure.traceback, "\n") end
  else
    local m = R.metrics
    logline(fmt("result: valid: val_loss %.4f <= %.4f in %.0fms of training (%d steps, %.0f tokens/s)",
      m.val_loss, target, m.train_time_ms, m.steps, m.tokens_per_s or 0))
  end
  log:close()
  rlog:close()
  return R
end


-- ============================================================================================
-- commands

local TRAIN_USAGE = [[
usage: speedrun train [RECIPE] [options]
Trains a recipe in a supervised child process and writes results.json, log.txt, recipe.log
and loss.svg to the output folder. With no RECIPE: tasks/default/recipe.lua on the default
corpus, at the scale that fits (proxy on a GPU, demo on the CPU).
  --scale S          micro | demo | proxy | full | auto (default auto)
  --device D         cpu | cuda | auto (default auto: cuda when usable)
  --steps N          override the scale's number of steps
  --seed N           seed (default 1)
  --data X           corpus name (default, tiny, fineweb10B) or a folder of shards
  --out DIR          output folder (default runs/<recipe>-<time> next to the recipe)
  --time-limit S     wall-time limit in seconds (default by scale: micro 600, demo 1800, proxy/full 3600)
  --mem-limit SIZE   host memory limit, e.g. 4G (default 80% of RAM)
  --gpu-mem-limit SIZE   GPU memory cap (exported as SPEEDRUN_CUDA_MEM_LIMIT)
  --val-every N      validate every N steps (train mode only)
  --cuda-graph M     auto | off: replay the step as a CUDA graph when safe (default auto)
  --restricted       run the recipe in the score-mode sandbox
  --threads N        CPU threads
  --quiet            no progress or log lines
See docs/harness.md.
]]

local TRAIN_SPEC = {scale = "value", device = "value", steps = "value", seed = "value", data = "value", out = "value",
  ["time-limit"] = "value", ["mem-limit"] = "value", ["gpu-mem-limit"] = "value", ["val-every"] = "value",
  ["cuda-graph"] = "value", restricted = "flag", threads = "value", quiet = "flag", help = "flag",
  ["target"] = "value", ["val-tokens"] = "value", ["train-files"] = "value", ["val-files"] = "value"}

local function resolve_device(d)
  d = d or "auto"
  if d == "auto" then
    local ok, avail = pcall(sr.cuda_available)
    return (ok and avail) and "cuda" or "cpu"
  end
  if d ~= "cpu" and d ~= "cuda" then return nil end
  return d
end

-- ensures the default corpus exists (prepares it from the npm packages if it can)
local function ensure_corpus(name)
  local train = lsr_data.files(name, "train")
  if glob_nonempty(train) then return true end
  if name == "fineweb10B" then
    return nil, "the FineWeb shards are missing: run `speedrun data fetch fineweb10B` first"
  end
  io.stderr:write(fmt("speedrun: the '%s' corpus is not prepared in %s; preparing it now (speedrun data prepare --corpus %s)\n",
    name, lsr_data.dir(), name))
  local ok, err = lsr_data.prepare {corpus = name}
  if not ok then
    return nil, fmt("could not prepare the '%s' corpus: %s\n  set-up: run `bash scripts/setup.sh` (npm packages) and then `speedrun data prepare --corpus %s`",
                    name, tostring(err), name)
  end
  return true
end

-- common job construction for train/score/calibrate
local function make_job(recipe, o)
  local rp = abspath(recipe)
  if not exists(rp) then return nil, "no such recipe: " .. recipe end
  local device = resolve_device(o.device)
  if not device then return nil, "--device must be cpu, cuda or auto" end
  if o["cuda-graph"] and o["cuda-graph"] ~= "auto" and o["cuda-graph"] ~= "off" then return nil, "--cuda-graph must be auto or off" end
  local data = o.data or "default"
  local train_files, val_files, data_dir
  if o["train-files"] then
    train_files, val_files = o["train-files"], o["val-files"]
    if not val_files then return nil, "--train-files needs --val-files" end
    data_dir = abspath(dirname(train_files))
  else
    if not data:find("/") and not exists(data .. "/.") then
      local ok, err = ensure_corpus(data)
      if not ok then return nil, err end
    end
    train_files, val_files, data_dir = data_patterns(data)
  end
  local job = {recipe = rp, workspace = dirname(rp), scale = o.scale or "auto", device = device,
               seed = tonumber(o.seed) or 1, steps = tonumber(o.steps), train_files = train_files,
               val_files = val_files, deny = {abspath(data_dir)}, restricted = o.restricted and true or false,
               val_every = tonumber(o["val-every"]), threads = tonumber(o.threads), cuda_graph = o["cuda-graph"],
               target_val_loss = tonumber(o.target), val_tokens = tonumber(o["val-tokens"])}
  return job
end

local function limits(o, scale)
  local mem = parse_size(o["mem-limit"]) or math.floor(H.ram_bytes() * 0.8)
  return {time_limit = tonumber(o["time-limit"]) or M.TIME_LIMITS[scale] or 3600, mem_limit = mem,
          gpu_mem_limit = parse_size(o["gpu-mem-limit"]), quiet = o.quiet}
end

function M.train(args)
  local o, pos = parse_args(args, TRAIN_SPEC)
  if not o then return die(pos .. "\n" .. TRAIN_USAGE) end
  if o.help then io.stdout:write(TRAIN_USAGE) return 0 end
  H.trap_signals()
  local recipe = pos[1] or (H.source_dir() .. "/tasks/default/recipe.lua")
  local job, err = make_job(recipe, o)
  if not job then return die(err) end
  local stem = job.recipe:match("([^/]+)/[^/]*$") or "recipe"
  job.out = o.out or (job.workspace .. "/runs/" .. stem .. "-" .. os.date("%Y%m%d-%H%M%S"))
  local R = M.run_one(job, limits(o, job.scale))
  if not o.quiet then print("results: " .. job.out .. "/results.json") end
  return R.valid and 0 or 1
end

-- calibration file: {schema, entries = {[card] = {[scale] = {[record] = {...}}}}}
local function calibration_path(o)
  return o.calibration or os.getenv("SPEEDRUN_CALIBRATION") or (H.source_dir() .. "/calibration.json")
end

local function load_calibration(path)
  local s = read_file(path)
  if not s then return {schema = M.CALIBRATION_SCHEMA, entries = {}} end
  local c = json.decode(s)
  if type(c) ~= "table" then return {schema = M.CALIBRATION_SCHEMA, entries = {}} end
  c.entries = c.entries or {}
  return c
end

local function record_name(n) return fmt("record_%02d", n) end

-- K runs of one recipe; returns the runs and their summary
local function multi_run(recipe, o, k, out_root, label)
  local runs = {}
  local seed0 = tonumber(o.seed) or 1
  for i = 1, k do
    local job, err = make_job(recipe, o)
    if not job then return nil, err end
    job.seed = seed0 + i - 1
    job.out = out_root .. fmt("/run%d", i)
    job.restricted = label ~= "calibrate" or o.restricted
    local lim = limits(o, job.scale)
    if not o.quiet then print(fmt("== %s run %d/%d (seed %d) -> %s", label, i, k, job.seed, job.out)) end
    runs[i] = M.run_one(job, lim)
  end
  return runs
end

local function summarize(runs, target)
  local losses, times, all_ok = {}, {}, true
  for _, r in ipairs(runs) do
    if r.valid or r.status == "invalid" then
      losses[#losses + 1] = r.metrics.val_loss
      times[#times + 1] = r.metrics.train_time_ms
    end
    if not (r.valid or r.status == "invalid") then all_ok = false end
  end
  local tl = stats.ttest_less(losses, target)
  local tt = stats.ttest_less(times, 0)
  return {n = #runs, completed = #losses, all_completed = all_ok, val_loss = {mean = tl.mean, std = tl.std,
          values = json.array(losses)}, train_time_ms = {mean = tt.mean, std = tt.std, values = json.array(times)},
          ttest = {target = target, t = tl.t, p = tl.p, df = #losses - 1, alternative = "mean val_loss < target"}}
end

local SCORE_USAGE = [[
usage: speedrun score WORKSPACE [options]
Scores WORKSPACE/recipe.lua in the restricted environment: K runs with seeds seed..seed+K-1;
per run train time, validation loss, validity; mean, std, a one-sided t-test that the mean
validation loss is below the target (verdict: pass when p < 0.01 and every run completed);
with --task N, FSR = (t_N - t) / (t_N - t_{N+1}) against the calibration file.
  --task N           the task (start record N, target record N+1)
  --scale S          micro | demo | proxy | full (default proxy on a GPU, micro on the CPU)
  --runs K           number of runs (default 3)
  --seed N           first seed (default 1)
  --alpha A          significance level (default 0.01)
  --calibration F    calibration file (default $SPEEDRUN_CALIBRATION or <checkout>/calibration.json)
  --out DIR          output folder (default WORKSPACE/runs/score-<time>)
  and the run options of `speedrun train` (--device, --data, --time-limit, --mem-limit, ...)
]]

local SCORE_SPEC = {}
for k, v in pairs(TRAIN_SPEC) do SCORE_SPEC[k] = v end
SCORE_SPEC.task = "value"; SCORE_SPEC.runs = "value"; SCORE_SPEC.alpha = "value"; SCORE_SPEC.calibration = "value"
SCORE_SPEC.tasks = "value"; SCORE_SPEC["tasks-dir"] = "value"; SCORE_SPEC.recipe = "value"; SCORE_SPEC.name = "value"

function M.score(args)
  local o, pos = parse_args(args, SCORE_SPEC)
  if not o then return die(pos .. "\n" .. SCORE_USAGE) end
  if o.help then io.stdout:write(SCORE_USAGE) return 0 end
  if not pos[1] then return die(SCORE_USAGE) end
  H.trap_signals()
  local ws = abspath(pos[1])
  local recipe = ws .. "/recipe.lua"
  if not exists(recipe) then return die("no recipe.lua in " .. ws) end
  local device = resolve_device(o.device)
  if not device then return die("--device must be cpu, cuda or auto") end
  o.device = device
  o.scale = o.scale or (device == "cuda" and "proxy" or "micro")
  local k = tonumber(o.runs) or 3
  local alpha = tonumber(o.alpha) or 0.01
  local task = tonumber(o.task)
  local calib_path = calibration_path(o)
  local calib = load_calibration(calib_path)
  local card = H.card(device == "cuda")
  local ref_i, ref_next
  if task then
    local by_card = calib.entries[card] or {}
    local by_scale = by_card[o.scale] or {}
    ref_i, ref_next = by_scale[record_name(task)], by_scale[record_name(task + 1)]
    -- the target and validation size come from the task's target record, not the workspace
    if ref_next and not o.target then o.target = tostring(ref_next.target_val_loss) end
    if ref_next and not o["val-tokens"] and ref_next.val_tokens then o["val-tokens"] = tostring(ref_next.val_tokens) end
  end
  local out_root = o.out or (ws .. "/runs/score-" .. os.date("%Y%m%d-%H%M%S"))
  mkdir_p(out_root)
  out_root = abspath(out_root)
  local runs, err = multi_run(recipe, o, k, out_root, "score")
  if not runs then return die(err) end
  local target = tonumber(o.target) or (runs[1].config and runs[1].config.target_val_loss)
  if not target then
    for _, r in ipairs(runs) do if r.config then target = r.config.target_val_loss break end end
  end
  local S = {schema = M.SCORE_SCHEMA, workspace = ws, recipe = recipe, scale = o.scale, device = device, card = card,
             task = task or json.null, alpha = alpha, runs = {}, software = software(), scored_at = iso_now()}
  for i, r in ipairs(runs) do
    S.runs[i] = {seed = r.seed, status = r.status, valid = r.valid, val_loss = r.metrics and r.metrics.val_loss or json.null,
                 train_time_ms = r.metrics and r.metrics.train_time_ms or json.null,
                 failure = r.failure, results = fmt("run%d/results.json", i)}
  end
  local sum = target and summarize(runs, target) or {n = #runs, completed = 0, all_completed = false}
  S.summary = sum
  local p = sum.ttest and sum.ttest.p
  local verdict, reason
  if not target then verdict, reason = "fail", "no run reported its configuration"
  elseif not sum.all_completed then
    local bad
    for _, r in ipairs(runs) do if not (r.valid or r.status == "invalid") then bad = r break end end
    verdict, reason = "fail", fmt("run with seed %d failed: %s: %s", bad.seed, bad.status, bad.failure.message or "")
  elseif sum.completed < 2 then
    verdict = (runs[1] and runs[1].valid) and "undetermined" or "fail"
    reason = "one run cannot show p < " .. alpha .. " (use --runs 3 or more)"
  elseif p and p < alpha then verdict, reason = "pass", fmt("mean val loss %.4f < %.4f with p = %.3g", sum.val_loss.mean, target, p)
  else verdict, reason = "fail", fmt("mean val loss %.4f is not significantly below %.4f (p = %s, need < %g)",
    sum.val_loss.mean, target, p and fmt("%.3g", p) or "n/a", alpha) end
  S.verdict, S.reason = verdict, reason
  if task then
    S.fsr = {t_i_ms = ref_i and ref_i.mean_ms or json.null, t_next_ms = ref_next and ref_next.mean_ms or json.null,
             calibration = calib_path}
    if ref_i and ref_next and sum.train_time_ms and sum.train_time_ms.mean then
      local f = stats.fsr(ref_i.mean_ms, ref_next.mean_ms, sum.train_time_ms.mean)
      S.fsr.raw = f or json.null
      -- as the benchmark's analysis: an invalid run scores 0; values are clipped to [0, 3] -> 0 outside
      local v = (verdict == "pass" and f and f >= 0 and f <= 3) and f or 0
      S.fsr.value = v
    else
      S.fsr.value = json.null
      S.fsr.note = fmt("no calibration for %s and %s at scale %s on %s in %s: run `speedrun calibrate --tasks %d,%d --scale %s`",
        record_name(task), record_name(task + 1), o.scale, card, calib_path, task, task + 1, o.scale)
    end
  end
  write_file(out_root .. "/score.json", json.encode(S, true) .. "\n")
  if not o.quiet then
    print(fmt("%-6s %-10s %-10s %-12s %s", "seed", "status", "val_loss", "train_ms", "note"))
    for _, r in ipairs(runs) do
      print(fmt("%-6d %-10s %-10s %-12s %s", r.seed, r.status,
        type(r.metrics.val_loss) == "number" and fmt("%.4f", r.metrics.val_loss) or "-",
        type(r.metrics.train_time_ms) == "number" and fmt("%.0f", r.metrics.train_time_ms) or "-",
        r.valid and "" or (r.failure.message or "")))
    end
    if sum.val_loss and sum.val_loss.mean then
      print(fmt("val_loss mean %.4f std %s; train_time mean %.0fms std %s; t = %s, p = %s",
        sum.val_loss.mean, sum.val_loss.std and fmt("%.4f", sum.val_loss.std) or "-", sum.train_time_ms.mean or 0,
        sum.train_time_ms.std and fmt("%.0fms", sum.train_time_ms.std) or "-",
        sum.ttest.t and fmt("%.3f", sum.ttest.t) or "-", sum.ttest.p and fmt("%.3g", sum.ttest.p) or "-"))
    end
    print(fmt("verdict: %s (%s)", verdict, reason))
    if S.fsr then
      print(S.fsr.value ~= json.null and fmt("FSR: %.3f", S.fsr.value) or ("FSR: n/a: " .. (S.fsr.note or "")))
    end
    print("score: " .. out_root .. "/score.json")
  end
  return verdict == "pass" and 0 or 1
end

local CALIBRATE_USAGE = [[
usage: speedrun calibrate [options]
Runs reference recipes (tasks/record_NN/recipe.lua) K times on this machine and stores the
measured train times (mean, std, card, software) in the calibration file used by `score`.
  --tasks LIST       record numbers, e.g. 1,2,3 or 1-5 (default: every tasks/record_NN found)
  --tasks-dir DIR    where the record folders are (default <checkout>/tasks)
  --recipe FILE --name NAME   calibrate one recipe under a name instead
  --scale S          (default proxy on a GPU, micro on the CPU)
  --runs K           (default 3)
  --calibration F    (default $SPEEDRUN_CALIBRATION or <checkout>/calibration.json)
  and the run options of `speedrun train`
]]

local function parse_list(s)
  local out = {}
  for part in s:gmatch("[^,]+") do
    local a, b = part:match("^(%d+)%-(%d+)$")
    if a then for i = tonumber(a), tonumber(b) do out[#out + 1] = i end
    else out[#out + 1] = tonumber(part) end
  end
  return out
end

function M.calibrate(args)
  local o, pos = parse_args(args, SCORE_SPEC)
  if not o then return die(pos .. "\n" .. CALIBRATE_USAGE) end
  if o.help then io.stdout:write(CALIBRATE_USAGE) return 0 end
  H.trap_signals()
  local device = resolve_device(o.device)
  if not device then return die("--device must be cpu, cuda or auto") end
  o.device = device
  o.scale = o.scale or (device == "cuda" and "proxy" or "micro")
  local k = tonumber(o.runs) or 3
  local tdir = o["tasks-dir"] or (H.source_dir() .. "/tasks")
  local items = {}
  if o.recipe then
    items[1] = {name = o.name or "custom", recipe = o.recipe}
  else
    local list = o.tasks and parse_list(o.tasks) or {}
    if not o.tasks then for i = 1, 30 do if exists(fmt("%s/%s/recipe.lua", tdir, record_name(i))) then list[#list + 1] = i end end end
    for _, n in ipairs(list) do items[#items + 1] = {name = record_name(n), recipe = fmt("%s/%s/recipe.lua", tdir, record_name(n))} end
  end
  if #items == 0 then return die("nothing to calibrate: no tasks/record_NN/recipe.lua found (use --tasks or --recipe)") end
  local path = calibration_path(o)
  local calib = load_calibration(path)
  local card = H.card(device == "cuda")
  local out_root = o.out or (H.source_dir() .. "/runs/calibrate-" .. os.date("%Y%m%d-%H%M%S"))
  mkdir_p(out_root)
  local rc = 0
  for _, it in ipairs(items) do
    if not exists(it.recipe) then return die("no such recipe: " .. it.recipe) end
    local runs, err = multi_run(it.recipe, o, k, out_root .. "/" .. it.name, "calibrate")
    if not runs then return die(err) end
    local target = runs[1].config and runs[1].config.target_val_loss
    local sum = summarize(runs, target or 0)
    local entry = {mean_ms = sum.train_time_ms.mean or json.null, std_ms = sum.train_time_ms.std or json.null,
                   times_ms = sum.train_time_ms.values, runs = k, completed = sum.completed,
                   val_loss_mean = sum.val_loss.mean or json.null, val_loss_std = sum.val_loss.std or json.null,
                   target_val_loss = target or json.null, val_tokens = runs[1].config and runs[1].config.val_tokens or json.null,
                   p = sum.ttest.p or json.null, all_valid = true, recipe = abspath(it.recipe), card = card,
                   device = device, scale = o.scale, software = software(), host = H.hostname(), measured_at = iso_now()}
    for _, r in ipairs(runs) do if not r.valid then entry.all_valid = false end end
    if not entry.all_valid then rc = 1 end
    calib.entries[card] = calib.entries[card] or {}
    calib.entries[card][o.scale] = calib.entries[card][o.scale] or {}
    calib.entries[card][o.scale][it.name] = entry
    print(fmt("%s: %s ms mean, %s ms std over %d runs (val_loss %s)%s", it.name,
      type(entry.mean_ms) == "number" and fmt("%.0f", entry.mean_ms) or "-",
      type(entry.std_ms) == "number" and fmt("%.0f", entry.std_ms) or "-", k,
      type(entry.val_loss_mean) == "number" and fmt("%.4f", entry.val_loss_mean) or "-",
      entry.all_valid and "" or "  (not every run was valid)"))
  end
  calib.schema = M.CALIBRATION_SCHEMA
  write_file(path, json.encode(calib, true) .. "\n")
  print("calibration: " .. path)
  return rc
end

function M.main(cmd, args)
  if cmd == "train" then return M.train(args)
  elseif cmd == "score" then return M.score(args)
  elseif cmd == "calibrate" then return M.calibrate(args) end
  return die("unknown harness command " .. tostring(cmd))
end

return M
