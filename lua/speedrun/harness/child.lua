-- speedrun.harness.child: one recipe run inside the child process (`speedrun _child JOB.json`,
-- an internal command of host/harness.c). It owns the clock, the batches, the validation and the checks; the recipe only
-- sees its ctx, its batches and the validation inputs (never the targets). Everything this file
-- needs is captured in locals before the recipe is loaded, so a recipe that changes shared
-- tables (string, speedrun.F, the Tensor metatable) cannot change what is measured.
-- Results go to the parent as JSON lines on the event channel (fd 3), which the recipe cannot
-- reach. See docs/harness.md.
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local sr = require "speedrun"
local data = require "speedrun.data"
local sandbox = require "speedrun.harness.sandbox"

local now, sync, checksum, ce_sum, causal_diff, emit_raw = H.now, H.sync, H.checksum, H.ce_sum, H.causal_diff, H.emit
local encode, decode = json.encode, json.decode
local fmt, sfind, slower = string.format, string.find, string.lower
local traceback = debug.traceback
local no_grad, manual_seed, is_tensor = sr.no_grad, sr.manual_seed, sr.is_tensor
local pcall, xpcall, error, type, pairs, ipairs, tostring, tonumber = pcall, xpcall, error, type, pairs, ipairs, tostring, tonumber
local mfloor, mmin, mmax, mhuge = math.floor, math.min, math.max, math.huge
local setmetatable, select = setmetatable, select
local real_open = io.open
local core = require "speedrun.core"
-- Tensor methods, captured: the recipe can replace entries of the shared methods table
local methods = core.Tensor.methods
local m_item, m_clone, m_narrow, m_to, m_tolist, m_copy = methods.item, methods.clone, methods.narrow, methods.to, methods.tolist, methods.copy_
local shape_of = H.shape
local tensor_new = sr.tensor
local F_cross_entropy = sr.F.cross_entropy
local sum_finite, int_range = H.sum_finite, H.int_range
local tconcat = table.concat
local cuda = require "speedrun.cuda"
local cuda_graph = cuda.graph
local trace_start, trace_stop = H.trace_start, H.trace_stop
local mabs = math.abs

-- CUDA graphs of the training step (docs/harness.md "CUDA graphs")
local GRAPH_AUDIT_EVERY = 50     -- replayed steps between eager audits of the step's launches
local GRAPH_LOSS_RTOL = 1e-5     -- replay vs eager from the same state: the step's loss ...
local GRAPH_PROBE_RTOL = 1e-4    -- ... and the loss of the updated model on the same batch

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

-- validation cross-entropy of one chunk: the engine's fused cross-entropy (captured above, on
-- the logits' device, f64 row statistics) per token, summed on the host in double precision;
-- the shapes and target ids are checked first
local function chunk_ce(logits, y)
  local ls, ys = shape_of(logits), shape_of(y)
  if #ls ~= #ys + 1 then error(fmt("eval returned logits with %d dimensions for inputs with %d (want one more: the vocabulary)", #ls, #ys), 0) end
  for d = 1, #ys do
    if ls[d] ~= ys[d] then error(fmt("eval returned logits of shape [%s] for inputs of shape [%s]", tconcat(ls, ", "), tconcat(ys, ", ")), 0) end
  end
  local _, hi = int_range(y)
  if hi >= ls[#ls] then error(fmt("a validation target is token %d but the logits have only %d columns (vocab_size too small)", hi, ls[#ls]), 0) end
  return sum_finite(F_cross_entropy(logits, y, {reduction = "none"}))
end

local M = {}

local function emit(ev) emit_raw(encode(ev)) end

-- failure kinds: lua_error, cuda_fault, oom, timeout, nan, invalid, rejected, crash
local Fail = {}
Fail.__index = Fail
local function fail(kind, message) error(setmetatable({kind = kind, message = message}, Fail), 0) end

local function classify(msg)
  local m = slower(msg)
  if sfind(m, "out of host memory", 1, true) or sfind(m, "not enough memory", 1, true)
     or sfind(m, "out of memory", 1, true) or sfind(m, "cudaerrormemoryallocation", 1, true) then
    return "oom"
  end
  if sfind(m, "cuda error", 1, true) or sfind(m, "illegal memory access", 1, true) or sfind(m, "misaligned", 1, true)
     or sfind(m, "device-side", 1, true) or sfind(m, "unspecified launch failure", 1, true)
     or sfind(m, "illegal instruction", 1, true) or sfind(m, "kernel fault", 1, true) or sfind(m, "cuda_fault", 1, true) then
    return "cuda_fault"
  end
  if sfind(msg, "rejected: ", 1, true) then return "rejected" end
  return "lua_error"
end

local function read_file(path)
  local f, err = real_open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function check_config(cfg, scale)
  local function need(cond, what) if not cond then fail("lua_error", fmt("recipe contract: config.%s: %s", scale, what)) end end
  need(type(cfg) == "table", "missing (the recipe has no such scale)")
  need(type(cfg.steps) == "number" and cfg.steps >= 1 and cfg.steps == mfloor(cfg.steps), "steps must be a positive integer")
  need(type(cfg.batch) == "table", "batch = {mode=, B=, T=, batch=} is required")
  local b = cfg.batch
  b.mode = b.mode or "bt"
  need(b.mode == "bt" or b.mode == "seq" or b.mode == "global", "batch.mode must be bt, seq or global")
  need(type(b.T) == "number" and b.T >= 1, "batch.T (sequence length) is required")
  if b.mode == "bt" then need(type(b.B) == "number" and b.B >= 1, "batch.B is required in mode bt") end
  if b.mode == "global" then need(type(b.batch) == "number" and b.batch >= 1, "batch.batch (tokens per step) is required in mode global") end
  need(type(cfg.target_val_loss) == "number", "target_val_loss is required")
  need(type(cfg.val_tokens) == "number" and cfg.val_tokens >= 1, "val_tokens is required")
end

local function tokens_per_step(b)
  if b.mode == "bt" then return b.B * b.T elseif b.mode == "seq" then return b.T else return b.batch end
end

local deepcopy = require("speedrun.util").deepcopy

-- the run; raises Fail objects or plain errors
local function run(job, R)
  local restricted = job.restricted
  local device = job.device
  local is_cuda = device == "cuda"
  local violations = {}
  local box
  if restricted then
    box = sandbox.install {workspace = job.workspace, out = job.out, deny = job.deny or {}, cwd = job.workspace,
      on_violation = function(what)
        violations[#violations + 1] = what
        emit {ev = "violation", what = what}
      end}
  end
  R.violations = violations

  -- the recipe
  local env
  if restricted then env = sandbox.env({workspace = job.workspace}, box)
  else
    env = setmetatable({}, {__index = _G})
    env.speedrun = sr
  end
  local src, err = read_file(job.recipe)
  if not src then fail("lua_error", "cannot read the recipe: " .. tostring(err)) end
  local chunk, lerr = load(src, "@" .. job.recipe, "t", env)
  if not chunk then fail("lua_error", lerr) end
  local ok, recipe = xpcall(chunk, traceback)
  if not ok then error(recipe, 0) end
  if type(recipe) ~= "table" then fail("lua_error", "recipe contract: the recipe file must return a table (got " .. type(recipe) .. ")") end
  for _, f in ipairs {"setup", "train_step", "eval"} do
    if type(recipe[f]) ~= "function" then fail("lua_error", "recipe contract: the recipe has no function '" .. f .. "'") end
  end
  if type(recipe.config) ~= "table" then fail("lua_error", "recipe contract: the recipe has no config table") end
  local scale = job.scale
  if scale == "auto" then
    if is_cuda then scale = recipe.config.proxy and "proxy" or "micro"
    else scale = recipe.config.demo and "demo" or "micro" end
  end
  local cfg = deepcopy(recipe.config[scale])
  check_config(cfg, scale)
  if job.steps then cfg.steps = job.steps end
  if job.target_val_loss then cfg.target_val_loss = job.target_val_loss end
  if job.val_tokens then cfg.val_tokens = job.val_tokens end
  local steps, b = cfg.steps, cfg.batch
  local tps = tokens_per_step(b)
  local vb = cfg.val_batch or {}
  local vB, vT = vb.B or (b.mode == "bt" and b.B or 1), vb.T or b.T
  local val_tokens = mfloor(cfg.val_tokens / (vB * vT)) * vB * vT
  if val_tokens < vB * vT then fail("lua_error", fmt("recipe contract: val_tokens %d is less than one validation chunk (%d x %d)", cfg.val_tokens, vB, vT)) end
  -- the first `skip` steps are not timed (the records' rule: 10 steps; fewer for short runs)
  local skip = job.warmup_steps or mmin(10, mfloor(steps / 10))
  local obs_every = job.log_every or (is_cuda and mmax(1, mmin(10, mfloor(steps / 100))) or 1)
  local val_every = (not restricted) and (job.val_every or cfg.val_every) or nil
  if val_every and val_every < 1 then val_every = nil end

  -- data
  local train_files, val_files = job.train_files, job.val_files
  local loader, lerr2 = data.loader {files = train_files, mode = b.mode, B = b.B, T = b.T, batch = b.batch, device = device}
  if not loader then fail("lua_error", "training data: " .. tostring(lerr2)) end
  local vloader, verr = data.val_loader {files = val_files, mode = "bt", B = vB, T = vT, tokens = val_tokens, device = device}
  if not vloader then fail("lua_error", "validation data: " .. tostring(verr)) end

  R.scale, R.config = scale, {steps = steps, batch = b, tokens_per_step = tps, target_val_loss = cfg.target_val_loss,
    val_tokens = val_tokens, val_batch = {B = vB, T = vT}, warmup_steps = skip, val_every = val_every or json.null}
  R.recipe_name = recipe.name
  emit {ev = "config", scale = scale, config = R.config, name = recipe.name}

  -- setup (untimed: building the model and optimizer)
  manual_seed(job.seed)
  local ctx = {scale = scale, config = deepcopy(cfg), device = device, seed = job.seed, steps = steps,
               tokens_per_step = tps, out_dir = job.out, workspace = job.workspace}
  local t_setup = now()
  local sok, serr = xpcall(recipe.setup, traceback, ctx)
  if not sok then error(serr, 0) end
  local e = sync(is_cuda)
  if e then fail("cuda_fault", "after setup: " .. e) end
  R.setup_time_ms = (now() - t_setup) * 1000

  -- validation: host cross-entropy over the fixed val tokens; the recipe sees inputs only
  local eval_fn = recipe.eval
  local eval_ms = 0
  local function call_eval(x)
    local rok, logits = xpcall(no_grad, traceback, eval_fn, ctx, x)
    if not rok then error(logits, 0) end
    if not is_tensor(logits) then fail("lua_error", "recipe contract: eval must return a logits tensor (got " .. type(logits) .. ")") end
    return logits
  end
  local function validate(final)
    local t0 = now()
    vloader:reset()
    local sum, count, nonfinite = 0, 0, 0
    local first_x, first_logits
    while true do
      local x, y = vloader:next()
      if not x then break end
      local xin = m_clone(x)
      local logits = call_eval(xin)
      local s, n, nf = chunk_ce(logits, y)
      sum, count, nonfinite = sum + s, count + n, nonfinite + nf
      if final and not first_x then first_x, first_logits = x, logits end
      logits = nil
    end
    if final and first_x then
      -- eval must be a pure function of its inputs: the first chunk again gives the same logits
      local again = call_eval(m_clone(first_x))
      local d, amax = causal_diff(first_logits, again, 1, 1 + shape_of(first_x)[2])
      R.checks.eval_stateless = {ok = d <= 1e-3 * mmax(1, amax), max_diff = d}
      if not R.checks.eval_stateless.ok then
        fail("rejected", fmt("eval is not a pure function of its inputs: the first validation chunk gave logits differing by %.3g on a second call (eval must not learn from validation data)", d))
      end
    end
    local es = sync(is_cuda)
    if es then fail("cuda_fault", "during validation: " .. es) end
    eval_ms = eval_ms + (now() - t0) * 1000
    if nonfinite > 0 then return 0 / 0, count end
    return sum / count, count
  end

  -- causality: change a later token; earlier logits (and other rows) must not move
  local function causality()
    vloader:reset()
    local x = vloader:next()
    local rows = mmin(2, shape_of(x)[1])
    x = m_clone(m_narrow(x, 1, 1, rows))
    local T = shape_of(x)[2]
    local ids = m_tolist(m_to(x, "cpu"))
    local base = call_eval(m_clone(x))
    local worst, amax_all = 0, 0
    local positions = {T, mmax(2, mfloor(T / 2) + 1)}
    if T < 2 then positions = {} end
    for _, pos in ipairs(positions) do
      local row = ids[1]
      local old = row[pos]
      local new = old
      for j = 1, T do if row[j] ~= old then new = row[j]; break end end
      if new == old then new = (old + 1) % 50257 end
      local copy = {}
      for r = 1, rows do
        copy[r] = {}
        for j = 1, T do copy[r][j] = ids[r][j] end
      end
      copy[1][pos] = new
      local xp = tensor_new(copy, {dtype = "int32", device = device})
      local pert = call_eval(xp)
      local d, amax = causal_diff(base, pert, 1, pos)
      if d > worst then worst = d end
      if amax > amax_all then amax_all = amax end
    end
    local ok2 = worst <= 1e-3 * mmax(1, amax_all)
    R.checks.causality = {ok = ok2, max_diff = worst, positions = positions}
    if not ok2 then
      fail("rejected", fmt("non-causal model: changing a later token moved earlier logits by up to %.3g (a model may use only tokens at or before each position)", worst))
    end
  end

  -- CUDA graph of train_step: eager warm-up steps whose launch traces must agree, a capture,
  -- one step replayed and then run eagerly from the same state (the eager result is kept), then
  -- replays with eager audits; any doubt leaves the run eager with the reason in results.json
  local train_step, schedule = recipe.train_step, recipe.schedule
  if schedule ~= nil and type(schedule) ~= "function" then fail("lua_error", "recipe contract: recipe.schedule must be a function") end
  local G = {used = false, replays = 0, eager_steps = 0, audits = 0}
  R.cuda_graph = G
  local graph, gx, gy, ref_trace, last_audit
  local want_graph
  local cap_step = skip - 1                -- eager steps 1..cap_step; traces of the last two
                                           -- (not step 1: it creates the optimizer state)
  local function no_graph(why, step)
    G.reason = why
    emit {ev = "graph", used = false, step = step, reason = why}
    if graph then graph:free() end
    graph, gx, gy, want_graph = nil, nil, nil, false
  end
  if not is_cuda then G.reason = "the device is " .. device .. " (CUDA graphs need cuda)"
  elseif job.cuda_graph == "off" then G.reason = "disabled by --cuda-graph off"
  elseif recipe.cuda_graph == false then G.reason = "the recipe opts out (recipe.cuda_graph = false)"
  elseif cap_step < 3 then G.reason = fmt("too few warm-up steps to capture before the clock starts (%d; need 4)", skip)
  end
  if G.reason then emit {ev = "graph", used = false, reason = G.reason} end
  want_graph = not G.reason
  local traces = {}

  -- mean cross-entropy of eval on the static batch: how the verification sees the parameters
  local function probe()
    local s, n = chunk_ce(call_eval(m_clone(gx)), gy)
    return s / n
  end
  local function rel(a, b) return mabs(a - b) / mmax(1, mabs(b)) end

  -- after eager step cap_step: compare its trace with the step before, then capture
  local function capture(x, y)
    local d = traces[cap_step - 1]:diff(traces[cap_step])
    if d then return no_graph(fmt("the step's kernel arguments changed between steps %d and %d: %s (a host-side value, such as a learning rate, computed in train_step: set it in recipe.schedule through a device tensor)", cap_step - 1, cap_step, d), cap_step) end
    gx, gy = m_clone(x), m_clone(y)
    local tr = trace_start()
    local ok, g = pcall(cuda_graph, train_step, ctx, STEP_SENTINEL, {x = gx, y = gy, step = STEP_SENTINEL})
    trace_stop()
    if not ok then return no_graph("capture failed: " .. tostring(g), cap_step) end
    if not g.captured then
      local why = g.reason
      g:free()
      return no_graph("not capturable: " .. tostring(why), cap_step)
    end
    graph = g
    d = traces[cap_step]:diff(tr)
    if d then return no_graph("the captured step differs from the eager one: " .. d, cap_step) end
    ref_trace = traces[cap_step]
  end

  -- step cap_step + 1: replay from a snapshot, restore, run eagerly, compare; returns the eager loss
  local function verify(step, batch)
    m_copy(gx, batch.x)
    m_copy(gy, batch.y)
    local bytes, serr = graph:snapshot()
    if not bytes then
      no_graph("verification: " .. tostring(serr), step)
      return nil, false
    end
    local lr = graph:replay()
    local l_r = is_tensor(lr) and m_item(lr) or nil
    local p_r = probe()
    graph:restore()
    graph:drop_snapshot()
    local rok, le = xpcall(train_step, traceback, ctx, step, batch)
    if not rok then error(le, 0) end
    G.eager_steps = G.eager_steps + 1
    local l_e = is_tensor(le) and m_item(le) or (type(le) == "number" and le or nil)
    local p_e = probe()
    G.verify = {step = step, snapshot_bytes = bytes, probe_diff = rel(p_r, p_e),
                loss_diff = (l_r and l_e) and rel(l_r, l_e) or json.null}
    local why
    if not (p_r == p_r and p_e == p_e) then why = "the model's loss after the step is not finite"
    elseif l_r and l_e and not (rel(l_r, l_e) <= GRAPH_LOSS_RTOL) then
      why = fmt("the replayed loss %.9g differs from the eager loss %.9g", l_r, l_e)
    elseif not (rel(p_r, p_e) <= GRAPH_PROBE_RTOL) then
      why = fmt("after the replayed update the loss on the batch is %.9g, after the eager one %.9g", p_r, p_e)
    end
    if why then
      no_graph("verification at step " .. step .. " failed: " .. why, step)
    else
      G.used, G.captured_at, last_audit = true, cap_step, step
      emit {ev = "graph", used = true, step = step, verify = G.verify}
    end
    return le, true
  end

  -- one training step, eager or replayed; returns the loss and the tensors holding the batch
  local function run_step(step, x, y)
    if schedule then
      local sok, serr = xpcall(schedule, traceback, ctx, step)
      if not sok then error(serr, 0) end
    end
    local batch = {x = x, y = y, step = step}
    if graph and not G.used then
      local le, done = verify(step, batch)
      if done then return le, x, y end
    end
    if graph and not same_shape(shape_of(x), shape_of(gx)) then
      no_graph(fmt("the batch shape changed at step %d (a graph replays fixed shapes)", step), step)
    end
    if graph and step - last_audit < GRAPH_AUDIT_EVERY then
      m_copy(gx, x)
      m_copy(gy, y)
      local lr = graph:replay()
      G.replays = G.replays + 1
      return lr, gx, gy
    end
    local tr = (want_graph and (step >= cap_step - 1 or graph)) and trace_start() or nil
    local rok, loss = xpcall(train_step, traceback, ctx, step, batch)
    if tr then trace_stop() end
    if not rok then error(loss, 0) end
    G.eager_steps = G.eager_steps + 1
    if graph then      -- an audit: the eager step must issue what the graph replays
      G.audits = G.audits + 1
      local d = ref_trace:diff(tr)
      if d then
        G.audit_failed = {step = step, since = last_audit + 1, diff = d}
        no_graph(fmt("the audit at step %d found the step's kernel arguments changed since the capture (%s): the graph was dropped; steps %d..%d replayed the captured values", step, d, last_audit + 1, step - 1), step)
      end
      last_audit = step
    elseif tr then
      traces[step] = tr
      traces[step - 2] = nil
      if step == cap_step then capture(x, y) end
    end
    return loss, x, y
  end

  -- training
  local acc, t_start, timing = 0, nil, false
  local function resume()
    local es = sync(is_cuda)
    if es then fail("cuda_fault", es) end
    t_start = now(); timing = true
  end
  local function pause()
    local es = sync(is_cuda)
    local t = now()
    if timing then acc = acc + (t - t_start) end
    timing = false
    if es then fail("cuda_fault", es) end
  end
  local wall0 = now()
  if val_every then
    local vl = validate(false)
    emit {ev = "val", step = 0, steps = steps, val_loss = vl, train_time_ms = 0, tokens = 0}
  end
  for step = 1, steps do
    if step == skip + 1 then resume() end
    local x, y = loader:next()
    if not x then
      pause()
      fail("lua_error", fmt("the training data ran out at step %d (%d tokens per step)", step, tps))
    end
    local observe = step <= skip or step == steps or step % obs_every == 0 or (val_every and step % val_every == 0)
    local hx, hy
    if observe then
      if timing then pause() end
      hx, hy = checksum(x), checksum(y)
      if step > skip then resume() end
    end
    local loss, bx, by = run_step(step, x, y)
    if observe then
      pause()
      if checksum(bx) ~= hx or checksum(by) ~= hy then
        fail("rejected", fmt("train_step modified its batch tensors at step %d (batches are read-only)", step))
      end
      local lv
      if is_tensor(loss) then lv = m_item(loss) elseif type(loss) == "number" then lv = loss end
      if lv and lv ~= lv or lv == mhuge or lv == -mhuge then
        fail("nan", fmt("the training loss became %s at step %d", lv ~= lv and "NaN" or tostring(lv), step))
      end
      emit {ev = "step", step = step, steps = steps, loss = lv, train_time_ms = acc * 1000, tokens = step * tps,
            timed_steps = mmax(0, step - skip), wall_ms = (now() - wall0) * 1000}
      if val_every and step % val_every == 0 and step < steps then
        local vl = validate(false)
        emit {ev = "val", step = step, steps = steps, val_loss = vl, train_time_ms = acc * 1000, tokens = step * tps}
        if vl ~= vl then fail("nan", fmt("the validation loss became NaN at step %d", step)) end
      end
      if step < steps and step >= skip then resume() end
    end
    x, y, bx, by, loss = nil, nil, nil, nil, nil
  end
  if timing then pause() end
  if graph then graph:free() end
  graph = nil
  local train_time_ms = acc * 1000
  R.metrics = {steps = steps, train_time_ms = train_time_ms, tokens = steps * tps,
               step_avg_ms = steps > skip and train_time_ms / (steps - skip) or json.null,
               tokens_per_s = train_time_ms > 0 and (steps - skip) * tps / (train_time_ms / 1000) or json.null,
               setup_time_ms = R.setup_time_ms}

  -- the final validation (with the stateless-eval check), then causality
  local vl, vcount = validate(true)
  causality()
  R.metrics.val_loss = vl ~= vl and json.null or vl
  R.metrics.val_tokens = vcount
  R.metrics.eval_time_ms = eval_ms
  R.metrics.peak_host_bytes = H.peak_rss()
  R.metrics.peak_gpu_bytes = H.cuda_peak(is_cuda)
  emit {ev = "val", step = steps, steps = steps, val_loss = vl, train_time_ms = train_time_ms, tokens = steps * tps, final = true}
  if vl ~= vl then fail("nan", "the final validation loss is NaN") end
  if #violations > 0 then fail("rejected", violations[1]) end
end

function M.main(jobfile)
  local R = {checks = {}, violations = {}}
  local text, err = read_file(jobfile)
  if not text then io.stderr:write("speedrun _child: ", tostring(err), "\n"); return 2 end
  local job = decode(text)
  if job.threads then sr.set_num_threads(job.threads) end
  emit {ev = "start", pid = H.getpid(), card = H.card(job.device == "cuda" and sr.cuda_available())}
  local ok, e = xpcall(run, function(x)
    if getmetatable(x) == Fail then return x end
    local msg = type(x) == "string" and x or tostring(x)
    -- a traceback is already attached by the inner handlers; keep the first line as the message
    local first = msg:match("^(.-)\nstack traceback:") or msg
    local tb = msg:match("\n(stack traceback:.*)$") or traceback(nil, 2)
    return {kind = classify(first), message = first, traceback = tb}
  end, job, R)
  if not ok then
    if #R.violations > 0 and e.kind ~= "rejected" then
      e = {kind = "rejected", message = R.violations[1] .. " (then: " .. tostring(e.message) .. ")", traceback = e.traceback}
    end
    if e.kind == "rejected" and not e.message:find("^rejected: ") then e.message = "rejected: " .. e.message end
    R.failure = {kind = e.kind, message = e.message, traceback = e.traceback}
  end
  R.card = H.card(job.device == "cuda" and sr.cuda_available())
  emit {ev = "done", result = R}
  io.stdout:flush()
  return ok and 0 or 1
end

return M
