-- What the record tests share (tests/harness/test_records*.lua, run from tests/): a record's
-- recipe loaded with the speedrun module, a learnable synthetic batch (records 1-11) or document
-- stream (the flat-sequence records 12+), a micro setup with a 64-token vocabulary (the recipes'
-- own micro scale keeps the records' vocabulary so it also runs on the real corpora), and the two
-- cases every record gets: micro training lowers the loss with fp32, causal eval logits; and an
-- end-to-end `speedrun train --scale micro` run on synthetic shards (the recipe contract, host
-- validation and causality checks).
--   local R = dofile("harness/records_fixture.lua")
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F
local deepcopy = require("speedrun.util").deepcopy

local R = {VOCAB = 64, losses = {}}

function R.recipe_path(n) return ("../tasks/record_%02d/recipe.lua"):format(n) end

function R.load_recipe(n)
  local chunk = assert(loadfile(R.recipe_path(n), "t", setmetatable({speedrun = sr}, {__index = _G})))
  return chunk()
end

-- a fixed learnable batch: x[b][t] = (5 (b + k) + 7 t) mod 23, y the next token
function R.batch(B, Tn, k)
  local xs, ys = {}, {}
  for b = 1, B do
    local xr, yr = {}, {}
    for t = 1, Tn + 1 do
      local v = (5 * (b + k) + 7 * t) % 23
      if t <= Tn then xr[t] = v end
      if t > 1 then yr[t - 1] = v end
    end
    xs[b], ys[b] = xr, yr
  end
  return sr.tensor(xs, {dtype = "int32"}), sr.tensor(ys, {dtype = "int32"})
end

-- the recipe set up at micro scale for `steps` steps; o: {seed = (1), edit = function(cfg)}
function R.setup(n, steps, o)
  o = o or {}
  local recipe = R.load_recipe(n)
  local cfg = deepcopy(recipe.config.micro)
  cfg.model.vocab_size = R.VOCAB
  cfg.steps = steps
  if o.edit then o.edit(cfg) end
  sr.manual_seed(o.seed or 1)
  local ctx = {scale = "micro", config = cfg, device = "cpu", seed = 1, steps = steps,
               tokens_per_step = cfg.batch.B * cfg.batch.T}
  recipe.setup(ctx)
  return recipe, ctx, cfg
end

local function maxdiff(a, b) return F.max(F.abs(F.cast(a, "float64") - F.cast(b, "float64"))):item() end

-- the case "micro training lowers the loss; eval is fp32, causal" for record n; check(lg) adds
-- the record's own checks on the eval logits
function R.micro_case(n, check)
  T.case(("record_%02d: micro training lowers the loss; eval is fp32, causal"):format(n), function()
    local steps = 6
    local recipe, ctx, cfg = R.setup(n, steps)
    local B, Tn = cfg.batch.B, cfg.batch.T
    local losses = {}
    for s = 1, steps do
      local x, y = R.batch(B, Tn, s % 2)
      if recipe.schedule then recipe.schedule(ctx, s) end
      local l = recipe.train_step(ctx, s, {x = x, y = y, step = s})
      losses[s] = sr.is_tensor(l) and l:item() or l
      T.ok(losses[s] == losses[s], "finite loss")
    end
    R.losses[n] = losses
    T.ok(losses[steps] < losses[1] - 0.3, ("loss %.4f -> %.4f should fall"):format(losses[1], losses[steps]))
    local x = R.batch(2, Tn, 0)
    local lg = sr.no_grad(recipe.eval, ctx, x)
    T.eq(table.concat(lg.shape, ","), ("2,%d,%d"):format(Tn, R.VOCAB))
    T.eq(lg.dtype, "float32")
    if check then check(lg) end
    local ids = x:tolist()
    ids[1][Tn] = (ids[1][Tn] + 1) % R.VOCAB
    local lg2 = sr.no_grad(recipe.eval, ctx, sr.tensor(ids, {dtype = "int32"}))
    local d = maxdiff(lg:narrow(2, 1, Tn - 1), lg2:narrow(2, 1, Tn - 1))
    T.ok(d < 1e-4, "causal: earlier logits moved by " .. d)
    T.ok(maxdiff(lg:narrow(2, Tn, 1), lg2:narrow(2, Tn, 1)) > 0, "the changed position's logits move")
  end)
end

-- the case "record_NN runs under speedrun train --scale micro" on synthetic shards. o: steps
-- (--steps; nil: the recipe's), val_tokens (128), documents (an EOT every 61 tokens, for the
-- flat-sequence records 12+), skip (a reason to skip the test: a missing engine feature), why
-- (said with the validation check), max_val (10.6, the micro target; false: no check)
function R.harness_case(n, o)
  o = o or {}
  T.case(("record_%02d runs under speedrun train --scale micro%s"):format(n, o.documents and " (seq batches)" or ""), function()
    if o.skip then T.skip(o.skip) end
    local H, data, json = require "speedrun.harness_core", require "speedrun.data", require "speedrun.json"
    local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. ("/records_%02d"):format(n)
    os.execute("rm -rf " .. T.shell_quote(tmp))
    H.mkdir(tmp .. "/data")
    local ids = {}
    for k = 1, 6000 do ids[k] = (o.documents and k % 61 == 1) and 50256 or (k * 7) % 23 end
    assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", ids))
    assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", ids))
    local sh = T.shell_quote
    os.execute(("%s train %s --scale micro --device cpu %s--val-tokens %d --train-files %s --val-files %s --out %s --quiet > %s 2>&1")
      :format(sh(arg[-1]), sh(R.recipe_path(n)), o.steps and ("--steps " .. o.steps .. " ") or "", o.val_tokens or 128,
              sh(tmp .. "/data/syn_train_*.bin"), sh(tmp .. "/data/syn_val_*.bin"), sh(tmp .. "/run"), sh(tmp .. "/out.txt")))
    local s = T.read(tmp .. "/run/results.json")
    T.ok(s, "results.json written: " .. (T.read(tmp .. "/out.txt") or ""))
    local r = json.decode(s)
    T.eq(r.status, "valid", "status (" .. tostring(type(r.failure) == "table" and r.failure.message) .. ")")
    T.eq(r.name, ("record_%02d"):format(n))
    T.ok(r.checks.causality.ok and r.checks.eval_stateless.ok, "host checks pass")
    if o.max_val ~= false then
      T.ok(r.metrics.val_loss < (o.max_val or 10.6), "val loss below the micro target: " .. tostring(r.metrics.val_loss)
           .. (o.why and (" (" .. o.why .. ")") or ""))
    end
  end)
end

-- ---------------------------------------------------------------------------------------------
-- the flat-sequence records (12+): one document stream per step, token R.EOT separating documents

R.EOT = 0

function R.load_meta(n) return assert(loadfile(("../tasks/record_%02d/meta.lua"):format(n), "t", {}))() end

-- a flat learnable stream with documents: x[t] = (5 k + 7 t) mod 23 (0 = EOT every 23 tokens)
function R.stream(Tn, k)
  local xs, ys = {}, {}
  for t = 1, Tn + 1 do
    local v = (5 * k + 7 * t) % 23
    if t <= Tn then xs[t] = v end
    if t > 1 then ys[t - 1] = v end
  end
  return sr.tensor(xs, {dtype = "int32"}), sr.tensor(ys, {dtype = "int32"})
end

-- record n at micro scale on a flat stream: 64-token vocabulary, R.EOT; edit(cfg) changes it further
function R.setup_flat(n, steps, edit)
  local recipe = R.load_recipe(n)
  local cfg = deepcopy(recipe.config.micro)
  cfg.model.vocab_size, cfg.eot, cfg.steps = R.VOCAB, R.EOT, steps
  if edit then edit(cfg) end
  sr.manual_seed(1)
  local ctx = {scale = "micro", config = cfg, device = "cpu", seed = 1, steps = steps, tokens_per_step = cfg.batch.T}
  recipe.setup(ctx)
  return recipe, ctx, cfg
end

-- the case "the step is replayable": the launches of a step early in training and one late in it
-- (kernels, tensor layouts, scalar arguments: the harness's trace) are the same, so the harness
-- can capture the step as a CUDA graph and replay it for the whole run; a schedule value that
-- reached a kernel as a host argument (record 13's growing window did) would differ. AdamW's lr
-- and step count are held equal for the two traced steps: on the CPU they are kernel arguments,
-- on cuda they live in each group's device `sched` tensor, which the trace leaves out.
function R.graphable_case(n, o)
  o = o or {}
  T.case(("record_%02d: a late step launches what an early one did (the step is replayable)"):format(n), function()
    if o.skip then T.skip(o.skip) end
    local steps = 40
    local recipe, ctx, cfg = R.setup_flat(n, steps)
    T.ok(recipe.cuda_graph ~= false, "the recipe does not opt out of CUDA graphs")
    ctx.lr_mult = function() return 1.0 end
    local H = require "speedrun.harness_core"
    local traces, windows = {}, {}
    for _, s in ipairs {1, 2, steps - 5} do
      local x, y = R.stream(cfg.batch.T, s % 2)
      recipe.schedule(ctx, s)
      local w = ctx.window_t or ctx.window_blocks   -- the attention window the step reads (13-21)
      if s > 1 then
        for _, opt in ipairs(ctx.optimizers or {}) do
          for _, st in pairs(opt.state or {}) do if type(st) == "table" and st.step then st.step = 1 end end
        end
      end
      local tr = s > 1 and H.trace_start() or nil
      recipe.train_step(ctx, s, {x = x, y = y, step = s})
      if tr then H.trace_stop(); traces[#traces + 1] = tr; windows[#windows + 1] = w and w:item() end
    end
    if n >= 13 then T.ok(windows[1] ~= windows[2], ("the window moved (%s -> %s)"):format(windows[1], windows[2])) end
    T.eq(traces[1]:diff(traces[2]), nil, ("record %d: step %d launches what step 2 did"):format(n, steps - 5))
  end)
end

-- the case "micro training lowers the loss; eval is fp32, causal" for a flat-sequence record: a
-- later token turned into a document separator moves no earlier logit. o: skip (a reason),
-- head (the logits' width; default the vocabulary), first_loss (the zero head's ln(head) at
-- step 1), eval_T (function(cfg) -> the evaluation length; default the training one), check(lg)
function R.flat_micro_case(n, o)
  o = o or {}
  T.case(("record_%02d: micro training lowers the loss; eval is fp32, causal"):format(n), function()
    if o.skip then T.skip(o.skip) end
    local steps = 6
    local recipe, ctx, cfg = R.setup_flat(n, steps)
    local Tn, head = cfg.batch.T, o.head or R.VOCAB
    local losses = {}
    for s = 1, steps do
      local x, y = R.stream(Tn, s % 2)
      recipe.schedule(ctx, s)
      local l = recipe.train_step(ctx, s, {x = x, y = y, step = s})
      losses[s] = sr.is_tensor(l) and l:item() or l
      T.ok(losses[s] == losses[s], "finite loss")
    end
    R.losses[n] = losses
    T.ok(losses[steps] < losses[1] - 0.3, ("loss %.4f -> %.4f should fall"):format(losses[1], losses[steps]))
    if o.first_loss then
      T.ok(math.abs(losses[1] - math.log(head)) < 1e-3, ("zero head: the first loss is ln(%d)"):format(head))
    end
    local Tv = o.eval_T and o.eval_T(cfg) or Tn
    local x = R.stream(Tv, 0):view(1, Tv)
    local lg = sr.no_grad(recipe.eval, ctx, x)
    T.eq(table.concat(lg.shape, ","), ("1,%d,%d"):format(Tv, head))
    T.eq(lg.dtype, "float32")
    if o.check then o.check(lg) end
    for _, at in ipairs {Tv, Tv // 2 + 3} do
      local ids = x:tolist()
      ids[1][at] = ids[1][at] == R.EOT and 5 or R.EOT
      local lg2 = sr.no_grad(recipe.eval, ctx, sr.tensor(ids, {dtype = "int32"}))
      local d = maxdiff(lg:narrow(2, 1, at - 1), lg2:narrow(2, 1, at - 1))
      T.ok(d < 1e-4, ("causal (change at %d): earlier logits moved by %g"):format(at, d))
    end
  end)
end

-- the micro losses of every record trained, then the test's summary
function R.done()
  for n, l in pairs(R.losses) do
    io.write(("record_%02d micro losses:"):format(n))
    for _, v in ipairs(l) do io.write((" %.4f"):format(v)) end
    io.write("\n")
  end
  T.done()
end

return R
