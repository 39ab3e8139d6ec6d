-- speedrun.harness.child: one recipe run inside the child process (`speedrun _child JOB.json`,
-- an internal command spawned by harness/supervise.lua). It owns the clock, the batches, the
-- validation and the checks; the recipe only sees its ctx, its batches and the validation inputs
-- (never the targets). Everything the run needs is captured in locals of this file and of the
-- modules below before the recipe is loaded, so a recipe that changes shared tables (string,
-- speedrun.F, the Tensor metatable) cannot change what is measured. Results go to the parent as
-- JSON lines on the event channel (fd 3), which the recipe cannot reach. See docs/harness.md.
--   harness/recipe.lua   loading the recipe, its contract, the run's plan
--   harness/rules.lua    validation and the rule checks (stateless eval, causality, read-only batches)
--   harness/graph.lua    one step, eager or a CUDA graph replay (capture, verification, audits)
--   harness/steps.lua    the training loop and its clock
--   harness/report.lua   events and failures
-- Validation bits per byte use the GPT-2 tokenizer (speedrun.tokenizer), loaded before the recipe.
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local json = require "speedrun.json"
local sr = require "speedrun"
local data = require "speedrun.data"
local sandbox = require "speedrun.harness.sandbox"
local report = require "speedrun.harness.report"
local recipes = require "speedrun.harness.recipe"
local rules = require "speedrun.harness.rules"
local graph = require "speedrun.harness.graph"
local steps = require "speedrun.harness.steps"
local state = require "speedrun.harness.state"
local deepcopy = require("speedrun.util").deepcopy
local stream_start = require("speedrun.harness.stream").start
local tokenizer = require "speedrun.tokenizer"

local emit, fail, call, caught = report.emit, report.fail, report.call, report.caught
local load_recipe, plan_of, summary = recipes.load, recipes.plan, recipes.summary
local read_file = recipes.read_file
local new_rules, new_stepper, train = rules.new, graph.new, steps.train
local data_loader, val_loader = data.loader, data.val_loader
local sandbox_install, sandbox_env, recipe_tables = sandbox.install, sandbox.env, sandbox.recipe_tables
local unpack = table.unpack
local fmt = string.format
local now, sync, notrain = H.now, H.sync, H.notrain
local compile_seconds = require("speedrun.kernel_core").compile_seconds
local setup_stats = require("speedrun.cuda").setup_stats   -- captured: speedrun.cuda is a module recipes may load

-- the engine's one-time setup so far (cuda.setup_stats: driver allocations and frees, GEMM plans,
-- module loads, graph builds), ms; 0 on the CPU
local function engine_ms() return steps.setup_ms(setup_stats()) end
local decode = json.decode
local manual_seed = sr.manual_seed
local load_tokenizer = tokenizer.load
local xpcall, pcall, setmetatable, tostring = xpcall, pcall, setmetatable, tostring
local LN2 = math.log(2)
local m_zero = require("speedrun.core").Tensor.methods.zero_   -- captured before the sandbox seals

local M = {}

-- the recipe's globals; in restricted mode the sandbox, whose violations go to R.violations
-- and, as they happen, to the parent
local function environment(job, R)
  if not job.restricted then
    local env = setmetatable({}, {__index = _G})
    env.speedrun = sr
    return env
  end
  local violations = R.violations
  local box = sandbox_install {workspace = job.workspace, out = job.out, deny = job.deny or {}, cwd = job.workspace,
    on_violation = function(what)
      violations[#violations + 1] = what
      emit {ev = "violation", what = what}
    end}
  return sandbox_env({workspace = job.workspace}, box)   -- env, and the modules it required
end

-- the training and validation loaders of the plan, and where the training stream starts
-- ({policy, start}: the parent's secret draw for a random stream, harness/stream.lua)
local function open_data(job, p)
  local b = p.batch
  local loader, err = data_loader {files = job.train_files, mode = b.mode, B = b.B, T = b.T, batch = b.batch, device = job.device}
  if not loader then fail("lua_error", "training data: " .. tostring(err)) end
  local start = stream_start(job.stream_draw, loader:info())
  if job.stream_draw then loader:reset(start) end   -- a ring from the start (round 18), even at token 0
  -- on the host, no shard mapped: rules.lua reads a chunk's inputs for eval, its targets only after
  local vloader, verr = val_loader {files = job.val_files, mode = "bt", B = p.vB, T = p.vT, tokens = p.val_tokens, device = "cpu"}
  if not vloader then fail("lua_error", "validation data: " .. tostring(verr)) end
  return loader, vloader, {policy = job.stream_draw and "random" or "fixed", start = start}
end

-- the no-training guard's attempts so far (restricted runs: it is on for the child's whole life but
-- the timed steps, steps.lua): any is a rejection, even if the recipe caught the error
local function trained_untimed(where)
  local hits, first, was = notrain(where)
  if hits > 0 then
    fail("rejected", fmt("%s inside %s (%d attempt(s), even if caught): it is not timed; training belongs in train_step",
                         first, was or "the harness's work between steps", hits))
  end
end

-- f(...) as untimed recipe code at `where` (restricted runs: the no-training guard there); its time,
-- the device work it queued included (synchronised: round 17), less its NVRTC compiles and the
-- engine's one-time setup added to R.setup_work_ms (the plausibility flag's: work moved off the clock)
local function untimed(job, R, where, f, ...)
  local t0, c0, e0 = now(), compile_seconds(), engine_ms()
  if job.restricted then notrain(where) end
  local r = table.pack(pcall(f, ...))
  local e = sync(job.device == "cuda")
  if e and r[1] then fail("cuda_fault", "after " .. where .. ": " .. e) end
  if job.restricted then trained_untimed("the harness's work between steps") end
  local spent = (now() - t0 - (compile_seconds() - c0)) * 1000 - (engine_ms() - e0)
  R.setup_work_ms = (R.setup_work_ms or 0) + math.max(0, spent)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- recipe.setup on a fresh ctx (untimed: building the model and optimizer); returns ctx
local function setup(job, recipe, p, R)
  manual_seed(job.seed)
  local ctx = {scale = p.scale, config = deepcopy(p.cfg), device = job.device, seed = job.seed, steps = p.steps,
               tokens_per_step = p.tps, out_dir = job.out, workspace = job.workspace, time_budget_s = p.time_budget}
  local t0 = now()
  untimed(job, R, "setup", call, recipe.setup, ctx)
  R.setup_time_ms = (now() - t0) * 1000
  return ctx
end

-- the GPT-2 tokenizer and its byte counter, captured before the recipe is loaded (the recipe may
-- change the Tokenizer methods it can reach); {why} when the tokenizer files are unavailable
local function open_tokenizer()
  local ok, tok, why = pcall(load_tokenizer)
  if not ok or not tok then return {why = "GPT-2 tokenizer unavailable: " .. tostring(ok and why or tok)} end
  return {tok = tok, count = tok.byte_count}
end

-- the bytes the validation targets decode to, once per run, before setup: {bytes, specials} or
-- {reason} (val_bpb is then null)
local function val_bytes(tk, vloader)
  if not tk.tok then return {reason = tk.why} end
  local bytes, specials = 0, 0
  vloader:reset()
  while true do
    local x = vloader:next()
    if not x then break end
    local y = vloader:targets()
    local ok, b, sp = pcall(tk.count, tk.tok, y)
    m_zero(x); m_zero(y)   -- freed host memory keeps what it held: no validation tokens left in it
    if not ok then vloader:reset(); return {reason = "the validation tokens are not GPT-2 ids: " .. tostring(b)} end
    bytes, specials = bytes + b, specials + sp
  end
  vloader:reset()
  if bytes == 0 then return {reason = "the validation tokens decode to no bytes"} end
  return {bytes = bytes, specials = specials}
end

-- t: {ms, done, by_budget} from the training loop
local function metrics(p, t, R, warm)
  local timed, ms = t.done - p.skip, t.ms
  return {steps = t.done, planned_steps = p.steps, time_budget_s = p.time_budget or json.null,
          stopped_by = t.by_budget and "time_budget" or "steps", train_time_ms = ms, tokens = t.done * p.tps,
          warmup_time_ms = warm.warmup_ms, warmup_allowance_ms = warm.allowance_ms, warmup_counted_ms = warm.counted_ms,
          warmup_compile_ms = warm.compile_ms, warmup_setup_ms = warm.setup_ms, warmup_steps_ms = json.array(warm.steps_ms),
          warmup_setup = warm.setup and warm.setup.warmup or json.null,
          first_step_setup = warm.setup and warm.setup.first_step or json.null,
          step_avg_ms = timed > 0 and ms / timed or json.null,
          tokens_per_s = ms > 0 and timed > 0 and timed * p.tps / (ms / 1000) or json.null,
          setup_time_ms = R.setup_time_ms, setup_work_ms = R.setup_work_ms}
end

-- validation bits per byte: the cross-entropy sum (nats) over ln 2 x the bytes of the targets
local function bpb(m, vsum, vb)
  m.val_bytes = vb.bytes or json.null
  if vb.bytes and vsum == vsum then
    m.val_bpb = vsum / (LN2 * vb.bytes)
  else
    m.val_bpb = json.null
    m.val_bpb_reason = vb.reason or "the validation loss is not finite"
  end
end

-- the final validation, then the stateless-eval and causality checks on random chunks
local function finish(p, rules_, R, t, is_cuda, roots)
  local before = roots and state.digest(roots)
  local vl, vcount, vsum = rules_:validate(true)
  emit {ev = "validated"}   -- the parent stamps the wall clock: the checks' time is what follows
  if vl == vl then rules_:checks() end
  local why = before and state.changed(before, state.digest(roots))
  if roots then R.checks.eval_state = {ok = not why, reason = why} end
  if why then fail("rejected", "eval changed the recipe's state (" .. why .. "): eval must not change the model") end
  local m = R.metrics
  m.val_loss = vl ~= vl and json.null or vl
  m.val_tokens = vcount
  bpb(m, vsum, t.vb)
  m.eval_time_ms = rules_.eval_ms
  m.peak_host_bytes = process.peak_rss()
  m.peak_gpu_bytes = H.cuda_peak(is_cuda)
  emit {ev = "val", step = t.done, steps = p.steps, val_loss = vl, train_time_ms = t.ms, tokens = t.done * p.tps, final = true,
        val_bpb = m.val_bpb ~= json.null and m.val_bpb or nil}
  if vl ~= vl then fail("nan", "the final validation loss is NaN") end
end

-- the run; raises Fail objects or plain errors; fills R
local function run(job, R)
  local is_cuda = job.device == "cuda"
  local tk = open_tokenizer()
  local env, required = environment(job, R)
  local recipe = untimed(job, R, "the recipe's loading", load_recipe, job.recipe, env)
  local p = plan_of(job, recipe, is_cuda)
  local loader, vloader, stream_ = open_data(job, p)
  local vb = val_bytes(tk, vloader)
  R.scale, R.config, R.recipe_name = p.scale, summary(p), recipe.name
  R.config.stream = stream_
  emit {ev = "config", scale = p.scale, config = R.config, name = recipe.name}
  local ctx = setup(job, recipe, p, R)
  rules.check_library("after setup")
  emit {ev = "ready"}   -- the model and optimizer built (the parent stamps the wall clock)
  local roots = job.restricted and {ctx, recipe, required, unpack(recipe_tables())} or nil   -- the recipe's state
  local rules_ = new_rules(ctx, recipe.eval, vloader, R, job.device, job.restricted, roots)
  local stepper, G = new_stepper {ctx = ctx, recipe = recipe, rules = rules_, device = job.device,
                                  cuda_graph = job.cuda_graph, skip = p.skip}
  R.cuda_graph = G
  local t = {vb = vb}
  local warm
  t.ms, warm, t.done, t.by_budget = train {plan = p, loader = loader, stepper = stepper, rules = rules_, is_cuda = is_cuda,
                                            restricted = job.restricted}
  R.metrics = metrics(p, t, R, warm)
  finish(p, rules_, R, t, is_cuda, roots)
  if job.restricted then trained_untimed(nil) end
end

-- the internal command `speedrun _child JOBFILE` (host/harness.c): runs the job, reports
-- "start", the events of the run and "done" with the result; returns the exit status
function M.main(jobfile)
  local R = {checks = {}, violations = {}}
  local text, err = read_file(jobfile)
  if not text then io.stderr:write("speedrun _child: ", tostring(err), "\n"); return 2 end
  local job = decode(text)
  if job.threads then sr.set_num_threads(job.threads) end
  -- the CPU threads the run computes with, before the recipe runs (it cannot set them: sandbox.lua)
  emit {ev = "start", pid = process.getpid(), card = H.card(job.device == "cuda" and sr.cuda_available()),
        threads = job.device ~= "cuda" and sr.get_num_threads() or nil}
  local ok, e = xpcall(run, caught, job, R)
  if not ok then R.failure = {kind = e.kind, message = e.message, traceback = e.traceback} end
  R.card = H.card(job.device == "cuda" and sr.cuda_available())
  emit {ev = "done", result = R}
  io.stdout:flush()
  return ok and 0 or 1
end

return M
