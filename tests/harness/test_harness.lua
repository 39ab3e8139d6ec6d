-- The harness end to end on CPU at micro scale: a valid recipe scores valid with a results.json
-- that passes the schema; each failure kind comes from a small bad recipe (tests/harness/recipes/) with
-- the right kind and message; score gives the t-test verdict and FSR from a calibration file;
-- killing the child mid-run gives a crash result. Data: synthetic shards written here.
local sr = require "speedrun"
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local json = require "speedrun.json"
local data = require "speedrun.data"

local exe = arg[-1]
-- the workspace: every test recipe, and the data folder inside it (off limits to recipes)
local W = T.workspace("harness", {"good", "syntax", "runtime", "loop", "slow", "oom", "nan", "noncausal", "execute",
                                  "readout", "readval", "requiredata", "modbatch", "stateful", "writeout", "graphs",
                                  "hostmodule", "hostmodule_http", "hostmodule_agent", "readblob"})
local tmp, ws, DATA, speedrun = W.tmp, W.ws, W.data, W.run
local sh = T.shell_quote

local function train(recipe, extra)
  local out = tmp .. "/run-" .. recipe
  os.execute("rm -rf " .. sh(out))
  local rc, text = speedrun("train " .. sh(ws .. "/" .. recipe .. ".lua") .. " --scale micro --device cpu --threads 1 "
                            .. DATA .. " --out " .. sh(out) .. " " .. (extra or ""))
  local f = io.open(out .. "/results.json")
  T.ok(f, "results.json written for " .. recipe .. "\n" .. text)
  local r = json.decode(f:read("a"))
  f:close()
  return r, rc, text, out
end

-- the results.json schema (docs/harness.md): required fields and their types
local function check_schema(r)
  local function typ(v, t, what) T.ok(type(v) == t, ("%s: %s expected, got %s"):format(what, t, type(v))) end
  T.eq(r.schema, "speedrun.results/1")
  typ(r.status, "string", "status")
  typ(r.valid, "boolean", "valid")
  T.ok(({valid = 1, invalid = 1, lua_error = 1, cuda_fault = 1, oom = 1, timeout = 1, nan = 1, rejected = 1,
         crash = 1})[r.status], "known status " .. tostring(r.status))
  T.eq(r.valid, r.status == "valid")
  if not r.valid then typ(r.failure, "table", "failure"); typ(r.failure.kind, "string", "failure.kind")
    typ(r.failure.message, "string", "failure.message"); T.eq(r.failure.kind, r.status) end
  for _, k in ipairs {"recipe", "workspace", "scale", "device", "card", "host", "started_at", "log", "svg"} do
    typ(r[k], "string", k)
  end
  typ(r.seed, "number", "seed")
  typ(r.wall_time_s, "number", "wall_time_s")
  typ(r.limits, "table", "limits")
  typ(r.software, "table", "software")
  typ(r.software.speedrun, "string", "software.speedrun")
  typ(r.metrics, "table", "metrics")
  typ(r.checks, "table", "checks")
  typ(r.curve, "table", "curve")
  if r.valid then
    typ(r.cuda_graph, "table", "cuda_graph")
    typ(r.cuda_graph.used, "boolean", "cuda_graph.used")
    for _, k in ipairs {"steps", "val_loss", "train_time_ms", "tokens", "step_avg_ms", "tokens_per_s", "val_tokens",
                        "peak_host_bytes", "setup_time_ms", "eval_time_ms"} do
      typ(r.metrics[k], "number", "metrics." .. k)
    end
    T.ok(r.checks.causality.ok and r.checks.eval_stateless.ok, "checks passed")
    typ(r.config, "table", "config")
    typ(r.config.target_val_loss, "number", "config.target_val_loss")
  end
end

T.case("a valid micro recipe scores valid; results.json, logs and SVG", function()
  local r, rc, text, out = train("good")
  T.eq(r.status, "valid", text)
  T.eq(rc, 0)
  check_schema(r)
  T.ok(r.metrics.val_loss < 3.0, "val loss below target")
  T.eq(r.metrics.steps, 30)
  T.eq(r.metrics.tokens, 30 * 64)
  T.eq(r.config.warmup_steps, 3)
  T.eq(r.config.stream.policy, "fixed"); T.eq(r.config.stream.start, 0, "train: the records' stream, from its first token")
  T.ok(r.metrics.train_time_ms > 0 and r.metrics.train_time_ms < r.wall_time_s * 1000, "train time inside wall time")
  local log = io.open(out .. "/log.txt"):read("a")
  T.ok(log:find("step:30/30 val_loss:%d+%.%d+ train_time:%d+ms step_avg:%d+%.%d+ms"), "speedrun log line\n" .. log)
  T.ok(log:find("step:10/30 train_loss:"), "train log lines")
  -- where the wall time went: every phase stamped, none negative, together the whole wall time
  local w, sum = r.wall_phases_s, 0
  for _, k in ipairs {"to_start", "to_config", "model", "val0", "steps", "final_val", "checks", "rest"} do
    T.ok(type(w[k]) == "number" and w[k] >= 0, "wall phase " .. k .. ": " .. tostring(w[k]))
    sum = sum + w[k]
  end
  T.close(sum, r.wall_time_s, 1e-6, "the phases add up to the wall time")
  T.ok(w.steps * 1000 >= r.metrics.train_time_ms * 0.5, "the steps' phase holds the training")
  T.ok(log:find("\nwall: %d+%.%ds %(start "), "the wall line\n" .. log)
  local svg = io.open(out .. "/loss.svg"):read("a")
  T.ok(svg:find("^<svg") and svg:find("polyline") and svg:find("</svg>"), "an SVG with curves")
  T.ok(#r.curve.train == 30 and #r.curve.val == 4, "curve points: every step, validation at 0, 10, 20, 30")
  -- restricted (score mode): no intermediate validation, so eval never sees validation data mid-run
  r = train("good", "--restricted")
  T.eq(r.status, "valid")
  check_schema(r)
  T.ok(r.restricted and #r.curve.val == 1, "only the final validation")
end)

T.case("CUDA graphs: on the CPU every step is eager and results.json says why", function()
  local r, rc, text, out = train("graphs")
  T.eq(r.status, "valid", text)
  T.eq(rc, 0)
  check_schema(r)
  local g = r.cuda_graph
  T.eq(g.used, false)
  T.ok(g.reason:find("the device is cpu", 1, true), "reason: " .. tostring(g.reason))
  T.eq(g.eager_steps, 60)
  T.eq(g.replays, 0)
  T.ok(io.open(out .. "/log.txt"):read("a"):find("cuda_graph: eager: the device is cpu", 1, true), "logged")
  T.ok(r.curve.train[60].loss < r.curve.train[1].loss, "recipe.schedule + train_step train")
  local rc2, text2 = speedrun("train " .. sh(ws .. "/graphs.lua") .. " --cuda-graph maybe " .. DATA)
  T.eq(rc2, 2)
  T.ok(text2:find("--cuda-graph must be auto or off", 1, true), text2)
end)

T.case("launch traces: equal for the same work, the first difference named", function()
  local F = sr.F
  local x = sr.randn(4, 8)
  local function work(s) return F.gelu(x * s):sum() end
  local a = H.trace_start(); work(2); H.trace_stop()
  local b = H.trace_start(); work(2); H.trace_stop()
  local c = H.trace_start(); work(3); H.trace_stop()
  local d = H.trace_start(); F.gelu(x:narrow(1, 1, 2) * 2):sum(); H.trace_stop()
  T.ok(a:count() >= 3, "launches recorded: " .. a:count())
  T.eq(a:diff(b), nil)
  local msg = a:diff(c)
  T.ok(msg and msg:find("mul_scalar", 1, true) and msg:find("f0 is 2, then 3", 1, true), tostring(msg))
  T.ok(tostring(a:diff(d)):find("shapes or layouts differ", 1, true), tostring(a:diff(d)))
  local e = H.trace_start(); work(2); work(2); H.trace_stop()
  T.ok(tostring(a:diff(e)):find("launches, then", 1, true), tostring(a:diff(e)))
end)

T.case("causal_diff: the largest change before each row's limit, the largest logit, NaN as infinity", function()
  local a = sr.randn(2, 4, 5)
  local bl = a:tolist()
  bl[2][3][2] = bl[2][3][2] + 0.5            -- row 2, position 3 moved by 0.5
  local b = sr.tensor(bl)
  local amax = 0
  for _, r in ipairs(a:tolist()) do for _, p in ipairs(r) do for _, v in ipairs(p) do amax = math.max(amax, math.abs(v)) end end end
  local d, m = H.causal_diff(a, a:clone(), {})
  T.eq(d, 0); T.close(m, amax, 1e-6)
  T.eq((H.causal_diff(a, b, {nil, 3})), 0)       -- positions >= 3 of row 2 are not compared
  T.close((H.causal_diff(a, b, {nil, 4})), 0.5, 1e-6)
  T.eq((H.causal_diff(a, b, 2, 3)), 0)
  T.close((H.causal_diff(a, b, 1, 3)), 0.5, 1e-6)  -- the limit on row 1: row 2 compared whole
  bl[1][1][1] = 0 / 0
  T.eq((H.causal_diff(a, sr.tensor(bl), {nil, 3})), math.huge)
  T.eq((H.causal_diff(a, sr.tensor(bl), {1, 3})), 0)  -- the NaN is past row 1's limit
  local none, why = H.causal_diff(a, b:to("bfloat16"), {})   -- not comparable: nil and why, the caller's verdict
  T.eq(none, nil)
  T.ok(tostring(why):find("[2,4,5] float32 logits on cpu, then [2,4,5] bfloat16 logits on cpu", 1, true), tostring(why))
  T.eq((H.causal_diff(a, sr.randn(2, 4, 6), {})), nil, "shapes differ")
  local at = sr.randn(5, 4, 3):transpose(1, 2)     -- eval may return a non-contiguous view
  local tl = at:contiguous():tolist()
  tl[2][3][2] = tl[2][3][2] + 0.25
  T.close((H.causal_diff(at, sr.tensor(tl), {})), 0.25, 1e-6)
end)

T.case("writing inside the run's output folder is allowed", function()
  local r, _, text, out = train("writeout", "--restricted")
  T.eq(r.status, "valid", text)
  T.eq(io.open(out .. "/scratch/note.txt"):read("a"), "ok\n", "ctx.out_dir is the run folder's scratch/")
end)

local function expect(recipe, kind, pattern, extra)
  local r, rc, text = train(recipe, extra)
  T.eq(r.status, kind, recipe .. ": " .. tostring(r.failure and r.failure.message) .. "\n" .. text)
  T.eq(rc, 1)
  check_schema(r)
  if pattern then
    T.ok(r.failure.message:find(pattern), ("%s: message %q should match %q"):format(recipe, r.failure.message, pattern))
  end
  return r
end

T.case("syntax error -> lua_error", function()
  expect("syntax", "lua_error", "syntax.lua:1:")
end)

T.case("runtime error -> lua_error with message and traceback", function()
  local r = expect("runtime", "lua_error", "boom at step 3")
  T.ok(type(r.failure.traceback) == "string" and r.failure.traceback:find("stack traceback"), "traceback kept")
end)

T.case("infinite loop -> timeout, partial log kept", function()
  local t0 = H.now()
  local r = expect("loop", "timeout", "wall%-time limit of 4s", "--time-limit 4")
  T.ok(H.now() - t0 < 30, "killed promptly")
  T.ok(r.metrics.steps_done == 1, "partial progress recorded")
end)

T.case("huge allocation -> oom", function()
  expect("oom", "oom", "memory", "--mem-limit 1G")
end)

T.case("NaN loss -> nan", function()
  expect("nan", "nan", "became NaN")
end)

T.case("a model that peeks at later tokens -> rejected", function()
  expect("noncausal", "rejected", "non%-causal")
end)

T.case("eval that learns from validation data -> rejected", function()
  expect("stateful", "rejected", "pure function")
end)

T.case("os.execute (even caught) -> rejected", function()
  expect("execute", "rejected", "os.execute is not allowed", "--restricted")
end)

T.case("requiring a host-only module (speedrun.process, even caught) -> rejected", function()
  expect("hostmodule", "rejected", "require 'speedrun%.process' %(not a library module recipes may load%)", "--restricted")
end)

T.case("requiring the agent's modules (speedrun.http, speedrun.agent.*) -> rejected", function()
  expect("hostmodule_http", "rejected", "require 'speedrun%.http' %(not a library module recipes may load%)", "--restricted")
  expect("hostmodule_agent", "rejected", "require 'speedrun%.agent%.llm' %(not a library module recipes may load%)", "--restricted")
end)

T.case("reading outside the workspace -> rejected", function()
  expect("readout", "rejected", "may read only inside the workspace", "--restricted")
end)

T.case("reading a workspace file that is not a source file (loadfile, io.open) -> rejected", function()
  expect("readblob", "rejected", "reads only its source files", "--restricted")
end)

T.case("reading the validation data -> rejected", function()
  expect("readval", "rejected", "off limits", "--restricted")
  expect("requiredata", "rejected", "speedrun.data", "--restricted")
end)

T.case("modifying the batch tensors -> rejected", function()
  expect("modbatch", "rejected", "modified its batch")
end)

T.case("killing the child mid-run -> crash", function()
  local out = tmp .. "/run-kill"
  os.execute("rm -rf " .. sh(out))
  local p = process.spawn {argv = {exe, "train", ws .. "/slow.lua", "--scale", "micro", "--device", "cpu", "--quiet",
                             "--train-files", ws .. "/data/syn_train_*.bin", "--val-files", ws .. "/data/syn_val_*.bin",
                             "--out", out}}
  local pid
  for _ = 1, 200 do
    p:read(0.05)
    local f = io.open(out .. "/child.pid")
    if f then pid = tonumber(f:read("l")); f:close() end
    if pid then break end
  end
  T.ok(pid, "child pid written")
  process.sleep(1.5)
  os.execute("kill -9 " .. pid)
  local kind, code
  for _ = 1, 400 do
    p:read(0.05)
    kind, code = p:wait()
    if kind then break end
  end
  T.eq(kind, "exited", "the parent survives")
  T.eq(code, 1)
  local r = json.decode(io.open(out .. "/results.json"):read("a"))
  T.eq(r.status, "crash")
  T.ok(r.failure.message:find("signal 9"), r.failure.message)
  check_schema(r)
end)

T.case("calibrate, then score with the t-test verdict and FSR", function()
  local calib = tmp .. "/calibration.json"
  os.remove(calib)
  -- two "records": the good recipe as record_01 and record_02 (same recipe: FSR arithmetic only);
  -- 3 runs: calibrate exits 1 for a reference a score would not pass, and 2 runs' t-test (df 1)
  -- misses p < 0.01 by chance (0.0121 in one CI run, 2026-12-06)
  local rc, text = speedrun("calibrate --recipe " .. sh(ws .. "/good.lua") .. " --name record_01 --runs 3 --device cpu --threads 1 "
                            .. DATA .. " --calibration " .. sh(calib) .. " --out " .. sh(tmp .. "/cal1") .. " --quiet")
  T.eq(rc, 0, text)
  local c = json.decode(io.open(calib):read("a"))
  T.eq(c.schema, "speedrun.calibration/1")
  local card = next(c.entries)
  local e = c.entries[card].micro.record_01
  T.ok(e.mean_ms > 0 and e.runs == 3 and e.target_val_loss == 3.0, "calibration entry")
  T.eq(e.recipe_sha256, H.sha256(io.open(ws .. "/good.lua"):read("a")), "the entry records the source it timed")
  T.eq(e.cpu_threads, 1, "and the CPU threads its time is of")
  T.ok(type(e.warmup_counted_ms) == "table" and #e.warmup_counted_ms == 3 and e.warmup_counted_ms[1] <= e.times_ms[1],
       "each run's counted warm-up, the part of its train time (`calibrate --show` splits the spread)")
  T.ok(type(e.wall_s) == "number" and e.wall_s * 1000 > e.times_ms[1] + e.times_ms[2] + e.times_ms[3],
       "the entry's wall time covers its runs (start-up to exit): " .. tostring(e.wall_s))
  T.ok(text:find("calibrate wall time: %d+ s for 1 references"), text)
  -- a reference's runs start from cold caches of their own, as a score's (round 17: an entry an
  -- agent planted in the shared cache could slow a reference and inflate an FSR)
  local job = json.decode(io.open(tmp .. "/cal1/record_01/run2/job.json"):read("a"))
  T.ok(tostring(job.kernel_cache):match("/cal1/record_01/run2/kernel%-cache$"), tostring(job.kernel_cache))
  T.ok(tostring(job.cuda_cache):match("/cal1/record_01/run2/cuda%-cache$"), tostring(job.cuda_cache))
  T.ok(H.stat(job.kernel_cache), "the run's kernel cache was made")
  -- and from a random place in the training stream, drawn by the parent for each run (a recipe
  -- cannot pick seeds offline for a stream it cannot know: round 17's limit)
  T.eq(e.stream, "random", "calibrate's default stream")
  local job1 = json.decode(io.open(tmp .. "/cal1/record_01/run1/job.json"):read("a"))
  T.ok(type(job.stream_draw) == "number" and job.stream_draw >= 0 and job.stream_draw < 1, tostring(job.stream_draw))
  T.ok(job1.stream_draw ~= job.stream_draw, "each run its own draw")
  local r2 = json.decode(io.open(tmp .. "/cal1/record_01/run2/results.json"):read("a"))
  T.eq(r2.config.stream.policy, "random")
  T.ok(math.type(r2.config.stream.start) == "integer" and r2.config.stream.start >= 0, tostring(r2.config.stream.start))
  -- make record_02 exactly 20% faster than record_01 so the expected FSR is known
  c.entries[card].micro.record_02 = {mean_ms = e.mean_ms * 0.8, std_ms = 1, target_val_loss = 3.0, val_tokens = 512,
                                     cpu_threads = 2}
  local f = io.open(calib, "w")
  f:write(json.encode(c, true))
  f:close()
  local sws = tmp .. "/score-ws"
  os.execute("rm -rf " .. sh(sws))
  H.mkdir(sws)
  local g = io.open(ws .. "/good.lua"):read("a")
  f = io.open(sws .. "/recipe.lua", "w")
  f:write(g)
  f:close()
  -- a task's runs start as its references' did: references of two policies cannot be scored
  local function score(extra, out, threads)
    return speedrun("score " .. sh(sws) .. " --task 1 --runs 3 --device cpu " .. (threads or "--threads 1 ") .. DATA ..
                    " --calibration " .. sh(calib) .. " --out " .. sh(tmp .. "/" .. out) .. " " .. (extra or ""))
  end
  rc, text = score(nil, "score0")
  T.eq(rc, 2); T.ok(text:find("calibrated with different training streams (random, fixed)", 1, true), text)
  c.entries[card].micro.record_02.stream = "random"
  f = io.open(calib, "w"); f:write(json.encode(c, true)); f:close()
  rc, text = score("--stream fixed", "score0")
  T.eq(rc, 2); T.ok(text:find("--stream fixed: the references in", 1, true), text)
  -- a CPU time is of its thread count: the task's references must agree, and the score computes with theirs
  rc, text = score(nil, "score0")
  T.eq(rc, 2); T.ok(text:find("timed with different CPU thread counts (record_01: 1, record_02: 2)", 1, true), text)
  c.entries[card].micro.record_02.cpu_threads = 1
  f = io.open(calib, "w"); f:write(json.encode(c, true)); f:close()
  rc, text = score(nil, "score0", "--threads 2 ")
  T.eq(rc, 2); T.ok(text:find("timed with 1 CPU threads, this score asks for 2", 1, true), text)
  rc, text = score(nil, "score1", "")   -- no --threads: the references' one
  local s = json.decode(io.open(tmp .. "/score1/score.json"):read("a"))
  T.eq(s.schema, "speedrun.score/1")
  T.eq(#s.runs, 3)
  T.eq(s.verdict, "pass", text)
  T.eq(rc, 0)
  T.ok(s.summary.ttest.p < 0.01, "p < 0.01")
  T.eq(s.summary.ttest.df, 2)
  -- FSR = (t_1 - t) / (t_1 - t_2), clipped to [0, 3] (0 outside)
  local t = s.summary.train_time_ms.mean
  local raw = (e.mean_ms - t) / (e.mean_ms - e.mean_ms * 0.8)
  T.close(s.fsr.raw, raw, 1e-9)
  T.close(s.fsr.value, (raw >= 0 and raw <= 3) and raw or 0, 1e-9)
  T.ok(text:find("verdict: pass"), text)
  T.eq(s.stream, "random")
  local r3 = json.decode(io.open(tmp .. "/score1/run3/results.json"):read("a"))
  T.eq(r3.config.stream.policy, "random", "the scored runs too")
  T.eq(r3.cpu_threads, 1, "with the references' CPU threads")
end)

T.case("score with a failing run fails the verdict", function()
  local sws = tmp .. "/score-bad"
  os.execute("rm -rf " .. sh(sws))
  H.mkdir(sws)
  local f = io.open(sws .. "/recipe.lua", "w")
  f:write((io.open(ws .. "/nan.lua"):read("a"):gsub('dofile%("good.lua"%)', 'dofile("' .. ws .. '/good.lua")')))
  f:close()
  local rc, text = speedrun("score " .. sh(sws) .. " --runs 1 --device cpu --threads 1 " .. DATA .. " --out " .. sh(tmp .. "/score2"))
  T.eq(rc, 1)
  local s = json.decode(io.open(tmp .. "/score2/score.json"):read("a"))
  T.eq(s.verdict, "fail")
  T.ok(s.runs[1].status == "rejected" or s.runs[1].status == "nan", text)
end)

T.done()
