-- speedrun.harness.cli: `speedrun train`, `speedrun score`, `speedrun calibrate` (the parent side):
-- options, jobs, one supervised run (run_one), the score's statistics and the calibration file.
-- Each recipe run is a child process (`speedrun _child JOB.json`, harness/child.lua):
--   harness/supervise.lua  spawning it, reading its events and output, its limits, killing it
--   harness/output.lua     log.txt, recipe.log, the progress line, results.json, loss.svg
--   harness/verdict.lua    the verdict on the run: valid or a failure kind
--   harness/options.lua    the command line, checked before any work
--   harness/guard.lua      outputs out of the recipe's reach, links refused by identity
--   harness/plausible.lua  the score's plausibility flags and the FSR's noise
-- See docs/harness.md.
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local json = require "speedrun.json"
local ladder = require "speedrun.harness.ladder"
local dataid = require "speedrun.harness.dataid"
local engine = require "speedrun.harness.engine"
local taskmod = require "speedrun.task"
local stats = require "speedrun.stats"
local summarize = require("speedrun.harness.summary").summarize
local output = require "speedrun.harness.output"
local supervise = require "speedrun.harness.supervise"
local verdict = require "speedrun.harness.verdict"
local options = require "speedrun.harness.options"
local guard = require "speedrun.harness.guard"
local plausible = require "speedrun.harness.plausible"
local tune = require "speedrun.harness.tune"
local calibfile = require "speedrun.harness.calibfile"
local apply = require "speedrun.harness.apply"
local stream = require "speedrun.harness.stream"
local usage = require "speedrun.harness.usage"
local sr = require "speedrun"
local lsr_data = require "speedrun.data"

local M = {}
local fmt = string.format
M.SCHEMA = output.SCHEMA
M.SCORE_SCHEMA = "speedrun.score/1"

-- default wall-time limits per scale, seconds (the benchmark's job_ttl is 60 minutes)
M.TIME_LIMITS = {micro = 600, demo = 1800, proxy = 3600, full = 3600}

local function die(msg, code)
  io.stderr:write("speedrun: ", msg, "\n")
  return code or 2
end

local parse_size, parse_args = options.parse_size, options.parse

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

local write_file = output.write_file

local function abspath(p)
  return H.realpath(p) or p
end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

local function iso_now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

-- the build and the engine's fingerprint (harness/engine.lua: its sources' SHA-256)
local function software()
  local b = H.build_info()
  b.engine = engine.id() or json.null
  b.clock = engine.CLOCK
  return b
end

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

-- run_one(job, opts) -> result (also written to job.out/results.json)
-- opts: time_limit (s), mem_limit (bytes), gpu_mem_limit (bytes), quiet
-- The run's folder job.out holds the parent's files (job.json, log.txt, recipe.log, results.json,
-- loss.svg, child.pid); the recipe gets a fresh job.out/scratch (ctx.out_dir), the only place it
-- may write. A restricted job's workspace is checked first (guard.check_workspace): a refused
-- workspace is a `rejected` run that never starts. A restricted (or cold_caches) job's kernel cache is a fresh
-- job.out/kernel-cache (the child's SPEEDRUN_KERNEL_CACHE): the shared cache is written by the
-- agent's own unrestricted runs, and a planted entry stands in for its source (cheat_kcache); the
-- compiles a cold cache costs are excused from the train time (warm-up) and the setup work. So is
-- the CUDA driver's JIT cache (CUDA_CACHE_PATH: PTX compiled by the driver, ~/.nv by default).
function M.run_one(job, opts)
  mkdir_p(job.out)
  job.out = abspath(job.out)
  -- a results.json left there (planted, or an earlier run's) must not stand in for this run's
  os.remove(job.out .. "/results.json")
  if H.stat(job.out .. "/results.json", true) then error(job.out .. "/results.json cannot be removed: the run's folder must be fresh", 0) end
  -- restricted: the workspace's runs folder (where `speedrun train` writes) is off limits too
  local runs_dir = H.realpath(job.workspace .. "/runs")
  if job.restricted and runs_dir then job.deny[#job.deny + 1] = runs_dir end
  local child_job = {}
  for k, v in pairs(job) do child_job[k] = v end
  child_job.out = guard.fresh_dir(job.out .. "/scratch")
  if job.restricted or job.cold_caches then   -- caches of its own: nothing an unrestricted run wrote (rounds 12, 13)
    child_job.kernel_cache = guard.fresh_dir(job.out .. "/kernel-cache")
    child_job.cuda_cache = guard.fresh_dir(job.out .. "/cuda-cache")
  end
  local data_id = dataid.for_child(child_job) or json.null   -- after the folders above: round 15
  local jobfile = job.out .. "/job.json"
  write_file(jobfile, json.encode(child_job, true))
  local t0, started_at = H.now(), iso_now()
  local log = output.open(job.out, job, opts.quiet, t0)
  log.on_config = function(scale)   -- scale auto: the limit of the scale the child resolved
    if not opts.time_limit_given and M.TIME_LIMITS[scale] then
      opts.time_limit = M.TIME_LIMITS[scale] + (opts.time_budget or 0)
    end
  end
  local refused = job.restricted and guard.check_workspace(job.workspace, child_job.deny)
  local run = refused and {peak_rss = 0} or supervise.run(child_job, jobfile, opts, log, t0)
  run.wall_s = H.now() - t0
  local R = output.results(log, run, opts, started_at)
  R.out_dir = child_job.out
  R.data = data_id   -- which data the child read: score compares it
  if run.engine_switches_removed and #run.engine_switches_removed > 0 then R.engine_switches_removed = run.engine_switches_removed end
  local failure = refused and {kind = "rejected", message = refused} or verdict.judge {killed = run.killed,
    kill_msg = run.kill_msg, exit_kind = run.exit_kind, exit_code = run.exit_code, exit_name = run.exit_name,
    done = log.done, violations = log.violations, gpu_mem_limit = opts.gpu_mem_limit, wall_s = run.wall_s,
    target = job.target_val_loss or (R.config and R.config.target_val_loss)}
  output.finish(log, R, failure)
  return R
end

-- ============================================================================================
-- commands

local TRAIN_SPEC = {scale = "value", device = "value", steps = "value", seed = "value", data = "value", out = "value",
  ["time-limit"] = "value", ["time-budget"] = "value", ["mem-limit"] = "value", ["gpu-mem-limit"] = "value", ["val-every"] = "value",
  ["cuda-graph"] = "value", restricted = "flag", threads = "value", quiet = "flag", help = "flag", ["scale-schedule"] = "flag",
  ["target"] = "value", ["val-tokens"] = "value", ["train-files"] = "value", ["val-files"] = "value", stream = "value"}

local function resolve_device(d)
  d = d or "auto"
  if d == "auto" then
    local ok, avail = pcall(sr.cuda_available)
    return (ok and avail) and "cuda" or "cpu"
  end
  if d ~= "cpu" and d ~= "cuda" then return nil end
  return d
end

-- the piece size a prepared corpus's manifest records (0: whole documents); nil without a manifest
local function prepared_pieces(name)
  local f = io.open(fmt("%s/%s/manifest.json", lsr_data.dir(), name), "rb")
  if not f then return nil end
  local m = f:read("a")
  f:close()
  return tonumber(m:match('"piece_bytes"%s*:%s*(%d+)')) or 0
end

-- ensures an embedded corpus exists as `speedrun data prepare --corpus NAME` makes it (prepares it
-- from the npm packages if it can; re-prepares one cut otherwise, e.g. whole documents from before
-- the ladder moved to pieces: the calibration is measured on the default cut)
local function ensure_corpus(name)
  local train = lsr_data.files(name, "train")
  if name == "fineweb10B" then
    if glob_nonempty(train) then return true end
    return nil, "the FineWeb shards are missing: run `speedrun data fetch fineweb10B` first"
  end
  local known, want = pcall(lsr_data.piece_bytes, name)
  local have, there = prepared_pieces(name), glob_nonempty(train)
  if there and (not known or have == want) then return true end
  local function cut(n) return n == 0 and "whole documents" or fmt("pieces of %d bytes", n) end
  local state = (there and have) and fmt("prepared with %s, not %s", cut(have), cut(want)) or "not prepared"
  io.stderr:write(fmt("speedrun: the '%s' corpus is %s in %s; preparing it now (speedrun data prepare --corpus %s)\n",
    name, state, lsr_data.dir(), name))
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
    -- absolute: the child globs from the workspace, the id is computed from here (the same files)
    local function absolute(pat) return abspath(dirname(pat)) .. "/" .. (pat:match("[^/]*$")) end
    train_files, val_files = absolute(train_files), absolute(val_files)
    data_dir = dirname(train_files)
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
               target_val_loss = tonumber(o.target), val_tokens = tonumber(o["val-tokens"]),
               time_budget_s = tonumber(o["time-budget"]), scale_schedule = o["scale-schedule"] and true or nil}
  if o.stream == "random" then   -- the run's own start, drawn here: the recipe never sees it
    local derr
    job.stream_draw, derr = stream.draw()
    if not job.stream_draw then return nil, "the training stream's random start: " .. tostring(derr) end
  end
  return job
end

-- the run's limits; scale auto: the longest its resolution may give until the child names it
local function limits(o, scale, device)
  local mem = parse_size(o["mem-limit"]) or math.floor(process.ram_bytes() * 0.8)
  if scale == "auto" then scale = device == "cuda" and "proxy" or "demo" end
  local budget = tonumber(o["time-budget"])
  return {time_limit = tonumber(o["time-limit"]) or (M.TIME_LIMITS[scale] or 3600) + (budget or 0), mem_limit = mem,
          time_limit_given = o["time-limit"] ~= nil, time_budget = budget, gpu_mem_limit = parse_size(o["gpu-mem-limit"]), quiet = o.quiet}
end

-- the output folder of a restricted run: outside the workspace (default: guard.runs_root())
local function restricted_out(o, ws, stem)
  local out = o.out or (guard.runs_root() .. "/" .. stem .. "-" .. os.date("%Y%m%d-%H%M%S"))
  local err = guard.outside_workspace(out, ws)
  if err then return nil, err end
  return out
end

function M.train(args)
  local o, pos = parse_args(args, TRAIN_SPEC)
  if not o then return die(pos .. "\n" .. usage.train) end
  if o.help then io.stdout:write(usage.train) return 0 end
  local bad = options.check(o, true)
  if bad then return die(bad) end
  process.trap_signals()
  local recipe = pos[1] or (H.source_dir() .. "/tasks/default/recipe.lua")
  local early = o.restricted and o.out and guard.outside_workspace(o.out, dirname(abspath(recipe)))
  if early then return die(early) end
  local job, err = make_job(recipe, o)
  if not job then return die(err) end
  local stem = job.recipe:match("([^/]+)/[^/]*$") or "recipe"
  job.out = o.out or (job.workspace .. "/runs/" .. stem .. "-" .. os.date("%Y%m%d-%H%M%S"))
  if job.restricted then
    job.out, err = restricted_out(o, job.workspace, stem)
    if not job.out then return die(err) end
  end
  local R = M.run_one(job, limits(o, job.scale, job.device))
  if o.quiet then print(R.valid and "result: valid" or ("result: " .. R.status .. ": " .. tostring(R.failure.message)))
  else print("results: " .. job.out .. "/results.json") end
  return R.valid and 0 or 1
end

local record_name = calibfile.record_name

-- K runs of one recipe; returns the runs and their summary
local function multi_run(recipe, o, k, out_root, label)
  local runs = {}
  local seed0 = tonumber(o.seed) or 1
  for i = 1, k do
    local job, err = make_job(recipe, o)
    if not job then return nil, err end
    job.seed = seed0 + i - 1
    job.out = out_root .. fmt("/run%d", i)
    job.restricted = label == "score" or o.restricted
    -- scored runs and references (calibrate, tune) alike from cold caches: the same conditions, and no
    job.cold_caches = true   -- planted entry (slow GEMM algorithms) inflating a reference's time (round 17)
    local lim = limits(o, job.scale, job.device)
    if not o.quiet then print(fmt("== %s run %d/%d (seed %d) -> %s", label, i, k, job.seed, job.out)) end
    runs[i] = M.run_one(job, lim)
  end
  return runs
end

local SCORE_SPEC = {}
for k, v in pairs(TRAIN_SPEC) do SCORE_SPEC[k] = v end
SCORE_SPEC.task = "value"; SCORE_SPEC.runs = "value"; SCORE_SPEC.alpha = "value"; SCORE_SPEC.calibration = "value"
SCORE_SPEC.tasks = "value"; SCORE_SPEC["tasks-dir"] = "value"; SCORE_SPEC.recipe = "value"; SCORE_SPEC.name = "value"

-- the target validation loss: --target, else the first run's configuration
local function runs_target(o, runs)
  local target = tonumber(o.target) or (runs[1].config and runs[1].config.target_val_loss)
  if not target then
    for _, r in ipairs(runs) do if r.config then target = r.config.target_val_loss break end end
  end
  return target
end

-- score.json's line for each run
local function score_runs(runs)
  local out = {}
  for i, r in ipairs(runs) do
    out[i] = {seed = r.seed, status = r.status, valid = r.valid, val_loss = r.metrics and r.metrics.val_loss or json.null,
              train_time_ms = r.metrics and r.metrics.train_time_ms or json.null,
              failure = r.failure, results = fmt("run%d/results.json", i)}
  end
  return out
end

-- the score's outcome from the runs' statuses (each run's own verdict is harness/verdict.lua's)
-- and the t-test: "pass", "fail" or "undetermined", and the reason
local function pass_or_fail(runs, sum, target, alpha)
  local p = sum.ttest and sum.ttest.p
  if not target then return "fail", "no run reported its configuration" end
  if not sum.all_completed then
    local bad
    for _, r in ipairs(runs) do if not (r.valid or r.status == "invalid") then bad = r break end end
    return "fail", fmt("run with seed %d failed: %s: %s", bad.seed, bad.status, tostring(bad.failure.message))
  end
  if sum.completed < 2 then
    return (runs[1] and runs[1].valid) and "undetermined" or "fail", "one run cannot show p < " .. alpha .. " (use --runs 3 or more)"
  end
  if p and p < alpha then return "pass", fmt("mean val loss %.4f < %.4f with p = %.3g", sum.val_loss.mean, target, p) end
  return "fail", fmt("mean val loss %.4f is not significantly below %.4f (p = %s, need < %g)",
    sum.val_loss.mean, target, p and fmt("%.3g", p) or "n/a", alpha)
end

-- score.json's fsr: FSR = (t_N - t) / (t_N - t_{N+1}) against the calibration
-- a note when a reference was timed by another engine build than the one scoring (an engine made
-- faster since would show as the agent's speed-up); nil when they agree or are not recorded
local function engine_note(current, ref_i, ref_next)
  local other = {}
  for _, r in ipairs {ref_i, ref_next} do
    local e = type(r.software) == "table" and r.software.engine
    if type(e) == "string" and type(current) == "string" and e ~= current and e ~= other[1] then other[#other + 1] = e end
  end
  if #other == 0 then return nil end
  return fmt("the references were timed by another engine build (%s; this one is %s): re-run `speedrun calibrate` "
    .. "for an FSR of this build", table.concat(other, ", "), current)
end

-- why no FSR: a reference's time was counted by another clock rule than this harness's
-- (engine.CLOCK); nil when both agree or do not say
local function clock_note(ref_i, ref_next, task, scale)
  for _, r in ipairs {ref_i, ref_next} do
    local c = engine.clock_of(r)
    if c and c ~= engine.CLOCK then
      return fmt("the references' times were counted by the harness's clock rule %d, this harness counts by rule %d "
        .. "(harness/engine.lua): re-time them with `speedrun calibrate --tasks %d,%d --scale %s`", c, engine.CLOCK,
        task, task + 1, scale)
    end
  end
end

local function fsr(S, sum, ref_i, ref_next, o, task, card, calib_path)
  local F = {t_i_ms = ref_i and ref_i.mean_ms or json.null, t_next_ms = ref_next and ref_next.mean_ms or json.null,
             calibration = calib_path}
  if ref_i and ref_next and sum.train_time_ms and sum.train_time_ms.mean then
    local f = stats.fsr(ref_i.mean_ms, ref_next.mean_ms, sum.train_time_ms.mean)
    F.raw = f or json.null
    -- as the benchmark's analysis: an invalid run scores 0; values are clipped to [0, 3] -> 0 outside
    F.value = (S.verdict == "pass" and f and f >= 0 and f <= 3) and f or 0
    local n = plausible.fsr_noise(ref_i, ref_next, sum.train_time_ms, f)
    F.noise = n.noise < math.huge and n.noise or json.null
    F.within_noise = n.within_noise
    F.engine_note = engine_note(S.software.engine, ref_i, ref_next) or json.null
    local old = clock_note(ref_i, ref_next, task, o.scale)
    if old then F.value, F.note = json.null, old end
    F.recipe_note = calibfile.recipe_note(task, ref_i, ref_next) or json.null
    F.reliability_note = ladder.reliability_note({{record_name(task), ref_i}, {record_name(task + 1), ref_next}}) or json.null
    F.data_note = dataid.unrecorded({ref_i, ref_next}, {record_name(task), record_name(task + 1)}) or json.null
  elseif ref_i and ref_next then
    F.value = json.null
    F.note = "no run completed: no train time to compare"
  else
    F.value = json.null
    F.note = fmt("no calibration for %s and %s at scale %s on %s in %s: run `speedrun calibrate --tasks %d,%d --scale %s`",
      record_name(task), record_name(task + 1), o.scale, card, calib_path, task, task + 1, o.scale)
  end
  return F
end

local function print_fsr(F)
  if F.value == json.null then print("FSR: n/a: " .. (F.note or "")) return end
  print(fmt("FSR: %.3f%s", F.value, F.within_noise and fmt(" (within the calibration's noise: +-%s; not a measured speed-up)",
    F.noise ~= json.null and fmt("%.3g", F.noise) or "inf") or ""))
  if type(F.engine_note) == "string" then print("note: " .. F.engine_note) end
  if type(F.recipe_note) == "string" then print("note: " .. F.recipe_note) end
  if type(F.reliability_note) == "string" then print("note: " .. F.reliability_note) end
  if type(F.data_note) == "string" then print("note: " .. F.data_note) end
end

local function print_score(S, runs, out_root, quiet)
  local sum = S.summary
  if quiet then
    print(fmt("verdict: %s (%s)", S.verdict, S.reason))
    if S.fsr then print_fsr(S.fsr) end
    return
  end
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
    local sp = sum.ttest.spread
    if sp and sp.used > sp.runs then
      print(fmt("  (t-test: the runs' spread %.4f raised to the target record's %.4f)", sp.runs, sp.ref))
    end
  end
  for _, f in ipairs(S.plausibility.flags) do print("flag: " .. f) end
  print(fmt("verdict: %s (%s)", S.verdict, S.reason))
  if S.fsr then print_fsr(S.fsr) end
  print("score: " .. out_root .. "/score.json")
end

function M.score(args)
  local o, pos = parse_args(args, SCORE_SPEC)
  if not o then return die(pos .. "\n" .. usage.score) end
  if o.help then io.stdout:write(usage.score) return 0 end
  if not pos[1] then return die(usage.score) end
  local bad = options.check(o)
  if bad then return die(bad) end
  process.trap_signals()
  local ws = abspath(pos[1])
  local recipe = ws .. "/recipe.lua"
  if not exists(recipe) then return die("no recipe.lua in " .. ws) end
  local device = resolve_device(o.device)
  if not device then return die("--device must be cpu, cuda or auto") end
  o.device = device
  if o.scale == "auto" then o.scale = nil end
  o.scale = o.scale or (device == "cuda" and "proxy" or "micro")
  local alpha, task = tonumber(o.alpha) or 0.01, tonumber(o.task)
  local calib_path = calibfile.path(o)
  local calib, cerr = calibfile.load(calib_path)
  if not calib then return die(cerr) end
  local card = H.card(device == "cuda")
  local ref_i, ref_next, data_id
  if task then
    local job0, jerr = make_job(recipe, o)   -- the data the runs will read (its id)
    if not job0 then return die(jerr) end
    -- the data must have an id to be compared with the references' (round 14: a shard that could
    -- not be hashed gave none, and nothing was compared)
    local why
    data_id, why = dataid.id(job0.train_files, job0.val_files)
    if not data_id then return die("the data's id cannot be computed: " .. tostring(why)) end
    ref_i, ref_next = calibfile.task_refs(o, calib, card, task, calib_path, data_id)
    if not ref_i then return die(ref_next) end
  end
  o.stream = o.stream or stream.DEFAULT   -- with --task, the references' (task_refs)
  local k = tonumber(o.runs) or 3          -- with --task at proxy, as many as the references were tuned for
  local out_root, oerr = restricted_out(o, ws, "score-" .. (ws:match("([^/]+)$") or "ws"))
  if not out_root then return die(oerr) end
  mkdir_p(out_root)
  out_root = abspath(out_root)
  local runs, err = multi_run(recipe, o, k, out_root, "score")
  if not runs then return die(err) end
  -- each run read the data the references were checked against (its id taken when it started), on
  -- the CPU with the references' threads
  for i, r in ipairs(runs) do
    if data_id and r.data ~= data_id then
      return die(fmt("run %d read other data (id %s) than the score checked against the references (%s): the data "
                     .. "changed while the score ran", i, tostring(r.data), data_id))
    end
    if ref_i and type(ref_i.cpu_threads) == "number" and r.cpu_threads ~= ref_i.cpu_threads then
      return die(fmt("run %d computed with %s CPU threads, the references with %d", i, tostring(r.cpu_threads), ref_i.cpu_threads))
    end
  end
  local target = runs_target(o, runs)
  local sum = target and summarize(runs, target, ref_next) or {n = #runs, completed = 0, all_completed = false}
  local S = {schema = M.SCORE_SCHEMA, workspace = ws, recipe = recipe, scale = o.scale, device = device, card = card,
             task = task or json.null, alpha = alpha, runs = score_runs(runs), summary = sum, software = software(), stream = o.stream,
             scored_at = iso_now()}
  S.verdict, S.reason = pass_or_fail(runs, sum, target, alpha)
  local flags = plausible.flags(runs, sum, ref_next, task and record_name(task + 1))
  S.plausibility = {flags = json.array(flags)}
  if S.verdict == "pass" and #flags > 0 then S.verdict, S.reason = "flagged", table.concat(flags, "; ") end
  if task then S.fsr = fsr(S, sum, ref_i, ref_next, o, task, card, calib_path) end
  write_file(out_root .. "/score.json", json.encode(S, true) .. "\n")
  print_score(S, runs, out_root, o.quiet)
  return S.verdict == "pass" and 0 or 1
end

local CALIBRATE_SPEC = {}
for k, v in pairs(SCORE_SPEC) do CALIBRATE_SPEC[k] = v end
CALIBRATE_SPEC["tune-steps"] = "flag"; CALIBRATE_SPEC.bracket = "value"; CALIBRATE_SPEC.show = "flag"; CALIBRATE_SPEC.apply = "flag"; CALIBRATE_SPEC.card = "value"; CALIBRATE_SPEC["probe-jobs"] = "value"; CALIBRATE_SPEC.untimed = "flag"

local function parse_list(s)
  local out = {}
  for part in s:gmatch("[^,]+") do
    local a, b = part:match("^(%d+)%-(%d+)$")
    if a then for i = tonumber(a), tonumber(b) do out[#out + 1] = i end
    else out[#out + 1] = tonumber(part) end
  end
  return out
end

-- the calibration entry of K runs of one recipe (with --tune-steps: the runs of the tuned budget)
local function calib_entry(runs, recipe, o, card)
  local target = runs_target(o, runs)
  local sum = summarize(runs, target or 0)
  local entry = {mean_ms = sum.train_time_ms.mean or json.null, std_ms = sum.train_time_ms.std or json.null,
                 times_ms = sum.train_time_ms.values, warmup_counted_ms = sum.warmup_counted_ms, runs = #runs, completed = sum.completed,
                 val_loss_mean = sum.val_loss.mean or json.null, val_loss_std = sum.val_loss.std or json.null,
                 val_losses = sum.val_loss.values, target_val_loss = target or json.null,
                 val_tokens = runs[1].config and runs[1].config.val_tokens or json.null,
                 steps = runs[1].config and runs[1].config.steps or json.null,
                 p = sum.ttest.p or json.null, all_valid = true, recipe = abspath(recipe), card = card,
                 recipe_sha256 = calibfile.recipe_sha256(recipe) or json.null,
                 data = runs[1].data or json.null, stream = stream.of_runs(runs), cpu_threads = runs[1].cpu_threads,
                 device = o.device, scale = o.scale, software = software(), host = process.hostname(), measured_at = iso_now()}
  for _, r in ipairs(runs) do
    if not r.valid then entry.all_valid = false end
    if r.data ~= entry.data then entry.data = json.null end   -- runs on different data: no one id
    if r.cpu_threads ~= entry.cpu_threads then entry.cpu_threads = json.null end
  end
  return entry
end

-- K runs of `speedrun train` at once (seeds seed..seed+K-1), each a supervised run of its own:
-- the probes of the step tuner need only their losses, which sharing the device does not change
local function concurrent_runs(recipe, po, k, out_root, jobs)
  local sh = require("speedrun.util").shell_quote
  local base = {sh(H.self_exe()), "train", sh(recipe), "--quiet"}
  for key, kind in pairs(TRAIN_SPEC) do
    if po[key] ~= nil and key ~= "seed" and key ~= "out" and key ~= "quiet" and key ~= "help" then
      base[#base + 1] = kind == "flag" and "--" .. key or ("--" .. key .. " " .. sh(po[key]))
    end
  end
  local cmds, seed0 = {}, tonumber(po.seed) or 1
  for i = 1, k do
    local out = fmt("%s/run%d", out_root, i)
    cmds[i] = fmt("%s --seed %d --out %s > %s 2>&1 &", table.concat(base, " "), seed0 + i - 1, sh(out), sh(out .. ".txt"))
  end
  mkdir_p(out_root)
  for first = 1, k, jobs do   -- jobs at a time (a run too large for the device K times over)
    os.execute("( " .. table.concat(cmds, " ", first, math.min(k, first + jobs - 1)) .. " wait )")
  end
  local runs = {}
  for i = 1, k do
    local s = read_file(fmt("%s/run%d/results.json", out_root, i))
    local r = s and json.decode(s)
    if type(r) ~= "table" then
      return nil, fmt("run %d at %s left no results.json: %s", i, out_root, read_file(fmt("%s/run%d.txt", out_root, i)) or "")
    end
    runs[i] = r
  end
  return runs
end

-- the options of runs at `steps` (nil: the recipe's own) with the schedule scaled; only the
-- recipe's own budget validates along the way (often: its curve's first crossing is the search's
-- next guess)
local function probe_options(o, steps)
  local po = {}
  for key, v in pairs(o) do po[key] = v end
  po.steps, po["scale-schedule"] = steps and tostring(steps), true
  po["val-every"] = o["val-every"] or (steps and "1000000000" or tostring(tune.FIRST_VAL_EVERY))
  return po
end

-- --probe-jobs N (default: K on a GPU, 1 on the CPU): a probe's K runs share the device, N at a
-- time; probes_together: N > 1, and N
local function probes_together(o, k)
  local n = math.min(k, tonumber(o["probe-jobs"]) or (o.device == "cuda" and k or 1))
  return n > 1, n
end

-- the step tuner's probe: K runs at `steps` (nil: the recipe's own) with the schedule scaled,
-- judged by the score's rule; a run that does not complete ends the search. Runs that shared the
-- device give the search its losses. confirm: the confirmation of a budget (tune.search), K fresh
-- seeds (seed + K ...) run one at a time, the device their own: the calibration's times
-- (with --untimed together, as the probes). A resumed search's recorded probes of the same budget
-- are taken instead of runs (it.prior), unless fresh.
local function tune_probe(it, o, k, out_root, alpha, confirm, note, fresh)
  return function(steps)
    local function say(P, what)
      if o.quiet then return end
      print(fmt("-- %s, %d steps%s: val_loss %.4f +- %.4f, p = %.3g: %s", it.name, P.steps, what, P.mean or 0, P.std or 0,
        P.p or 1, P.pass and "reaches the target" or "does not reach the target"))
    end
    local rec = steps and not fresh and it.prior and tune.recorded(it.prior, steps, confirm)
    if rec then   -- a resumed search: this budget's runs were done by the call the time limit cut
      local P = tune.from_record(rec, it.prior.target, alpha)
      say(P, (confirm and " (confirmation)" or "") .. " (recorded)")
      return P
    end
    local po = probe_options(o, steps)
    local dir = fmt("%s/%s/%s-%s", out_root, it.name, confirm and "confirm" or "steps", steps or "recipe")
    if confirm then po.seed = tostring((tonumber(o.seed) or 1) + k) end
    local runs, err
    local together, jobs = probes_together(o, k)
    if together and (not confirm or o.untimed) then runs, err = concurrent_runs(it.recipe, po, k, dir, jobs)
    else runs, err = multi_run(it.recipe, po, k, dir, confirm and "confirm" or "tune") end
    if not runs then error(err, 0) end
    local target = runs_target(o, runs)
    local sum = summarize(runs, target or 0)
    if not sum.all_completed or not target then error(select(2, pass_or_fail(runs, sum, target, alpha)), 0) end
    local P = tune.judge(sum.val_loss.values, target, alpha, true)
    P.steps, P.runs, P.target, P.train_time_ms = runs[1].config.steps, runs, target, sum.train_time_ms
    P.crossing = tune.crossing(runs, target, alpha)
    note(P, confirm)
    say(P, confirm and fmt(" (confirmation, seeds %s-%d)", po.seed, tonumber(po.seed) + k - 1) or "")
    return P
  end
end

local function probe_record(P)
  local schedule = P.runs and P.runs[1].config.schedule or P.schedule
  return {steps = P.steps, schedule = schedule or json.null, val_losses = json.array(P.values),
          val_loss_mean = P.mean or json.null, val_loss_std = P.std or json.null, p = P.p or json.null, pass = P.pass,
          train_time_ms_mean = P.train_time_ms.mean or json.null, pass_probability = P.power or json.null}
end

-- --bracket auto: the bracket of a search cut before it finished (calib.searches), else the one
-- the entry's last search ended with ({below, steps}), when for the target asked for now (--target,
-- else the one it was tuned to); nil (a whole search) otherwise
local function last_bracket(e, search, o)
  local t = type(e) == "table" and type(e.tune) == "table" and e.tune or {}
  if type(search) == "table" and (tonumber(o.target) or search.target) == search.target then
    local b = tune.bracket_of(search.probes)
    if b then return b end
  end
  local lo, hi, target = tonumber(t.below), tonumber(t.steps), tonumber(o.target) or t.target
  if lo and hi and lo < hi and t.target == target then return {lo, hi} end
end

-- the calibration entry of a finished search (or of a confirmed one, its cut pending: R.cut nil);
-- writes the tuned budget into the recipe; nil and why when it cannot
local function tuned_entry(it, o, k, card, R, alpha, t0)
  local cfg = R.best.runs and R.best.runs[1].config or {steps = R.best.steps, schedule = R.best.schedule}
  -- the calibration's times: the confirmation's K runs (fresh seeds), one at a time unless --untimed
  local timed, untimed = R.confirmed.runs, probes_together(o, k) and o.untimed
  -- --target moves the recipe's target with its budget: one command re-tunes the ladder to a new target
  local values = {steps = cfg.steps, target_val_loss = tonumber(o.target)}
  for key, v in pairs(type(cfg.schedule) == "table" and cfg.schedule or {}) do values[key] = v end
  local new, werr = tune.rewrite(read_file(it.recipe), R.best.runs and R.best.runs[1].scale or o.scale, values)
  if not new then return nil, fmt("%s: the tuned budget (%d steps) was not written: %s", it.name, R.steps, werr) end
  write_file(it.recipe, new)
  local entry = calib_entry(timed, it.recipe, o, card)
  entry.timed_alone = not untimed
  local probes = {}
  for i, P in ipairs(R.probes) do probes[i] = probe_record(P) end
  local confirmations = {}
  for i, P in ipairs(R.confirms) do confirmations[i] = probe_record(P) end
  entry.tune = {target = R.best.target, alpha = alpha, runs = k, first_seed = tonumber(o.seed) or 1,
                tolerance = tune.TOLERANCE, min_pass_probability = tune.POWER, steps = R.steps, schedule = cfg.schedule or json.null,
                below = R.below and R.below.steps or json.null, probes = probes, cut_fraction = tune.CUT,
                confirmations = confirmations, confirm_first_seed = (tonumber(o.seed) or 1) + k,
                cut = R.cut and probe_record(R.cut) or json.null, wall_s = H.now() - t0, tuned_at = iso_now()}
  return entry
end

-- the search's pass probability of a budget's pooled runs (tune.power), said as it is estimated
local function pooled_power(it, o, k, alpha)
  return function(ps)
    local pw = tune.power(ps, ps[1].target, alpha, k)
    if pw and not o.quiet then
      print(fmt("-- %s, %d steps: %d runs pooled, a score of %d runs passes ~%.0f %% of the time%s", it.name, ps[1].steps,
        #ps * k, k, 100 * pw, #ps > 1 and pw < tune.POWER and fmt(" (< %.0f %%: stepping up)", 100 * tune.POWER) or ""))
    end
    return pw
  end
end

-- the tuned budget's closing line: its bracket, pass probability and cut, and whether it is loose
local function say_tuned(it, entry, below, power, cut)
  local loose = tune.loose(entry.tune)
  print(fmt("%s: tuned to %d steps (%s; a score passes ~%.0f %% of the time); %d steps (%d %%) %s (~%.0f %%)%s", it.name,
    entry.tune.steps, below and fmt("%d steps do not reach the target", below) or "the smallest budget",
    100 * (tonumber(power) or 1), cut.steps, math.floor(tune.CUT * 100 + 0.5),
    cut.pass and "STILL REACH THE TARGET" or "do not reach it", 100 * (cut.power or 0),
    loose and fmt(": the target is loose for this recipe (%s); `score` refuses it at proxy scale", loose) or ""))
end

-- --tune-steps for one recipe: the search, the budget written into the recipe, and the entry of
-- the tuned budget's runs with how it was found; nil and why when no budget was found. The
-- confirmed budget is stored before its cut runs (cut pending), so a time limit there loses nothing.
local function tune_item(it, o, k, out_root, card, path)
  local alpha, t0 = tonumber(o.alpha) or 0.01, H.now()
  local function note(P, confirm)   -- each probe into the file as it ends: a cut search resumes
    calibfile.note(path, card, o.scale, it.name, P.target, probe_record(P), confirm, it.key)
  end
  local function stored(C)
    local entry = tuned_entry(it, o, k, card, C, alpha, t0)
    if not entry then return end
    calibfile.store(path, card, o.scale, it.name, entry)
    if not o.quiet then print(fmt("-- %s: %d steps confirmed, stored (cut pending)", it.name, C.steps)) end
  end
  local R, err = tune.search(tune_probe(it, o, k, out_root, alpha, false, note),
    {start = tonumber(o.steps), bracket = it.bracket or type(o.bracket) == "table" and o.bracket or nil,
     confirm = tune_probe(it, o, k, out_root, alpha, true, note), on_confirmed = stored,
     on_restart = function(cut, b)
       if not o.quiet then
         print(fmt("-- %s: %d steps (%d %% of %d) reach the target: %d is not the smallest budget that does; searching below %d",
           it.name, cut.steps, math.floor(tune.CUT * 100 + 0.5), b.steps, b.steps, cut.steps))
       end
     end,
     rerun = tune_probe(it, o, k, out_root, alpha, true, note, true),
     predict = function(ps, probes) return tune.predict_budget(ps, probes, ps[1].target, alpha, k) end,
     power = pooled_power(it, o, k, alpha)})
  if not R then return nil, fmt("%s: no step budget: %s", it.name, err) end
  local entry, eerr = tuned_entry(it, o, k, card, R, alpha, t0)
  if not entry then return nil, eerr end
  say_tuned(it, entry, R.below and R.below.steps, R.confirmed.power, R.cut)
  return entry
end

-- --bracket auto on a budget confirmed and stored whose cut a time limit stopped (tune.pending_cut):
-- the cut's runs alone (and their fresh-seed rerun near the limit), written into the stored entry;
-- the search before it is not run again, the entry's times are kept
local function resume_cut(it, o, k, out_root, card, path, e, steps)
  local alpha, t0 = tonumber(o.alpha) or 0.01, H.now()
  local function note(P, confirm)
    calibfile.note(path, card, o.scale, it.name, P.target, probe_record(P), confirm, it.key)
  end
  if not o.quiet then print(fmt("-- %s: %d steps confirmed and stored, its cut pending: the cut alone", it.name, e.tune.steps)) end
  local power = pooled_power(it, o, k, alpha)
  local ok, cut = pcall(function()
    local P = tune_probe(it, o, k, out_root, alpha, false, note)(steps)
    P.power = power({P})
    return tune.confirm_cut(P, {confirm = tune_probe(it, o, k, out_root, alpha, true, note), power = power}, {})
  end)
  if not ok then return nil, fmt("%s: the cut of its %d steps: %s", it.name, e.tune.steps, cut) end
  e.tune.cut = probe_record(cut)
  e.tune.wall_s = (tonumber(e.tune.wall_s) or 0) + H.now() - t0
  local C = type(e.tune.confirmations) == "table" and e.tune.confirmations[#e.tune.confirmations] or {}
  say_tuned(it, e, tonumber(e.tune.below), C.pass_probability, cut)
  return e
end

-- the recipes to calibrate: --recipe, --tasks, or every tasks/record_NN
local function calibrate_items(o)
  local tdir = o["tasks-dir"] or (H.source_dir() .. "/tasks")
  if o.recipe then return {{name = o.name or "custom", recipe = o.recipe}} end
  local items, list = {}, o.tasks and parse_list(o.tasks) or {}
  if not o.tasks then for i = 1, 30 do if exists(fmt("%s/%s/recipe.lua", tdir, record_name(i))) then list[#list + 1] = i end end end
  for _, n in ipairs(list) do items[#items + 1] = {name = record_name(n), recipe = fmt("%s/%s/recipe.lua", tdir, record_name(n))} end
  return items
end

local function print_entry(name, e)
  print(fmt("%s: %s ms mean, %s ms std over %d runs (val_loss %s)%s", name,
    type(e.mean_ms) == "number" and fmt("%.0f", e.mean_ms) or "-", type(e.std_ms) == "number" and fmt("%.0f", e.std_ms) or "-",
    e.runs, type(e.val_loss_mean) == "number" and fmt("%.4f", e.val_loss_mean) or "-",
    e.all_valid and "" or "  (not every run was valid)"))
end

-- the calibration file a command reads, with its card and scale (calibfile.pick: --card, else the
-- file's only card, else this machine's; --scale, else the card's only scale, else proxy); nil and
-- why when it cannot
local function picked_file(o)
  local path = calibfile.path(o)
  local calib, cerr = calibfile.load(path)
  if not calib then return nil, cerr end
  local card, scale = calibfile.pick(calib, o, H.card(resolve_device(o.device) == "cuda"), path)
  if not card then return nil, scale end
  return calib, card, scale, path
end

-- --show: the ladder of the calibration file (one card and scale: picked_file), no run
local function show_ladder(o)
  local calib, card, scale, path = picked_file(o)
  if not calib then return die(card) end
  local m, err = taskmod.manifest()
  if not m then return die(err) end
  print(ladder.format(ladder.build(calib, card, scale, m.tasks)))
  print("calibration: " .. path)
  return 0
end

-- --apply: each entry's tuned budget written back into its recipe, vouched by the entry's SHA-256
local function apply_tuned(o)
  local calib, card, scale, path = picked_file(o)
  if not calib then return die(card) end
  local rc = apply.run(calib.entries[card][scale], scale, calibrate_items(o), o.tasks ~= nil)
  print(fmt("calibration: %s (%s, scale %s)", path, card, scale))
  return rc
end

function M.calibrate(args)
  local o, pos = parse_args(args, CALIBRATE_SPEC)
  if not o then return die(pos .. "\n" .. usage.calibrate) end
  if o.help then io.stdout:write(usage.calibrate) return 0 end
  local bad = options.check(o)
  if bad then return die(bad) end
  if o.show then return show_ladder(o) end
  if o.apply then return apply_tuned(o) end
  o.stream = o.stream or stream.DEFAULT   -- references start where scored runs do
  process.trap_signals()
  local device = resolve_device(o.device)
  if not device then return die("--device must be cpu, cuda or auto") end
  o.device = device
  if o.scale == "auto" then o.scale = nil end
  o.scale = o.scale or (device == "cuda" and "proxy" or "micro")
  local k = tonumber(o.runs) or 3
  local items = calibrate_items(o)
  if #items == 0 then return die("nothing to calibrate: no tasks/record_NN/recipe.lua found (use --tasks or --recipe)") end
  for _, it in ipairs(items) do if not exists(it.recipe) then return die("no such recipe: " .. it.recipe) end end
  if o["tune-steps"] and k < 2 then return die("--tune-steps needs --runs 2 or more (the t-test of score)") end
  if o.bracket then
    local lo, hi = tostring(o.bracket):match("^(%d+):(%d+)$")
    lo, hi = tonumber(lo), tonumber(hi)
    if not (o["tune-steps"] and (o.bracket == "auto" or lo and hi and 0 < lo and lo < hi)) then
      return die("--bracket needs --tune-steps and LO:HI, two step counts 0 < LO < HI, or auto; got " .. tostring(o.bracket))
    end
    if lo then o.bracket = {lo, hi} end
  end
  local path = calibfile.path(o)
  local card = H.card(device == "cuda")
  local calib0, cerr = calibfile.load(path)   -- a junk file stops the command before any run
  if not calib0 then return die(cerr) end
  if o["tune-steps"] then   -- what a search is of (its probes are reused only for the same)
    for _, it in ipairs(items) do
      local job, jerr = make_job(it.recipe, o)
      if not job then return die(jerr) end
      it.key = {recipe = calibfile.recipe_sha256(job.recipe) or H.sha256(""), data = dataid.id(job.train_files, job.val_files) or json.null,
                stream = o.stream == "random" and "random" or nil,   -- a fixed stream's key as before it had one
                runs = k ~= 3 and k or nil}                          -- and 3 runs' as before
    end
  end
  if o.bracket == "auto" then
    local by_scale = (calib0.entries[card] or {})[o.scale] or {}
    local searches = ((calib0.searches or {})[card] or {})[o.scale] or {}
    for _, it in ipairs(items) do
      local S = searches[it.name]
      it.bracket, it.pending = last_bracket(by_scale[it.name], S, o), by_scale[it.name]
      it.prior = tune.same_search(S, tonumber(o.target) or (type(S) == "table" and S.target), it.key) and S or nil
    end
  end
  local out_root = o.out or (H.source_dir() .. "/runs/calibrate-" .. os.date("%Y%m%d-%H%M%S"))
  mkdir_p(out_root)
  local rc, t_all, timed = 0, H.now(), 0
  for _, it in ipairs(items) do
    local entry, err
    local t0 = H.now()
    if o["tune-steps"] then
      local cut_steps = it.pending and tune.pending_cut(it.pending, it.key, tonumber(o.target), k)
      if cut_steps then entry, err = resume_cut(it, o, k, out_root, card, path, it.pending, cut_steps)
      else entry, err = tune_item(it, o, k, out_root, card, path) end
      if not entry then io.stderr:write("speedrun: ", err, "\n") rc = 1 end
      if entry and tune.loose(entry.tune) then rc = 1 end
    else
      local runs
      runs, err = multi_run(it.recipe, o, k, out_root .. "/" .. it.name, "calibrate")
      if not runs then return die(err) end
      entry = calib_entry(runs, it.recipe, o, card)
      entry.wall_s = H.now() - t0   -- its K runs, start-up to exit (calibrate --show sums them)
      timed = timed + 1
    end
    if entry then
      if not entry.all_valid then rc = 1 end
      local ok, serr = pcall(calibfile.store, path, card, o.scale, it.name, entry)   -- after each recipe: a long
      if not ok then return die(serr) end                                       -- calibration keeps what it measured
      print_entry(it.name, entry)
    end
  end
  if timed > 0 then print(fmt("calibrate wall time: %.0f s for %d references", H.now() - t_all, timed)) end
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
