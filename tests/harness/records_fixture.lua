-- What the record tests share (tests/harness/test_records*.lua, run from tests/): a record's
-- recipe loaded with the speedrun module, a learnable synthetic batch, a micro setup with a
-- 64-token vocabulary (the recipes' own micro scale keeps the records' vocabulary so it also runs
-- on the real corpora), and the two cases every record gets: micro training lowers the loss with
-- fp32, causal eval logits; and an end-to-end `speedrun train --scale micro` run on synthetic
-- shards (the recipe contract, host validation and causality checks).
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

-- the case "record_NN runs under speedrun train --scale micro"; steps: --steps (nil: the recipe's)
function R.harness_case(n, steps, why)
  T.case(("record_%02d runs under speedrun train --scale micro"):format(n), function()
    local H, data, json = require "speedrun.harness_core", require "speedrun.data", require "speedrun.json"
    local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. ("/records_%02d"):format(n)
    os.execute("rm -rf " .. T.shell_quote(tmp))
    H.mkdir(tmp .. "/data")
    local ids = {}
    for k = 1, 6000 do ids[k] = (k * 7) % 23 end
    assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", ids))
    assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", ids))
    local sh = T.shell_quote
    os.execute(("%s train %s --scale micro --device cpu %s--val-tokens 128 --train-files %s --val-files %s --out %s --quiet > %s 2>&1")
      :format(sh(arg[-1]), sh(R.recipe_path(n)), steps and ("--steps " .. steps .. " ") or "", sh(tmp .. "/data/syn_train_*.bin"),
              sh(tmp .. "/data/syn_val_*.bin"), sh(tmp .. "/run"), sh(tmp .. "/out.txt")))
    local s = T.read(tmp .. "/run/results.json")
    T.ok(s, "results.json written: " .. (T.read(tmp .. "/out.txt") or ""))
    local r = json.decode(s)
    T.eq(r.status, "valid", "status (" .. tostring(type(r.failure) == "table" and r.failure.message) .. ")")
    T.eq(r.name, ("record_%02d"):format(n))
    T.ok(r.checks.causality.ok and r.checks.eval_stateless.ok, "host checks pass")
    T.ok(r.metrics.val_loss < 10.6, "val loss below the micro target" .. (why and (" (" .. why .. ")") or ""))
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
