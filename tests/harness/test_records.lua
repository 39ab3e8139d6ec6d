-- The record recipes (tasks/record_01..05) on the CPU at micro scale: each trains for a few steps
-- on a synthetic token stream and its loss goes down; eval gives fp32 logits [B, T, V] and is
-- causal; parameter names follow the PyTorch state dicts (for the weight converter). Muon's
-- Newton-Schulz maps a random matrix to one with singular values near 1; the rotary embedding is
-- a rotation (norms kept, scores depend on relative positions only). One recipe also runs end to
-- end under the harness (speedrun train --scale micro) on synthetic shards.
-- The micro configs are used with a 64-token vocabulary for speed (the recipes' own micro scale
-- keeps the records' vocabulary so it also runs on the real corpora).
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

sr.set_num_threads = sr.set_num_threads or function() end

local function recipe_path(n) return ("../tasks/record_%02d/recipe.lua"):format(n) end

local function load_recipe(n)
  local chunk = assert(loadfile(recipe_path(n), "t", setmetatable({speedrun = sr}, {__index = _G})))
  return chunk()
end

local deepcopy = require("speedrun.util").deepcopy

local VOCAB = 64

-- a fixed learnable batch: x[b][t] = (5 (b + k) + 7 t) mod 23
local function batch(B, Tn, k)
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

local function setup(n, steps)
  local recipe = load_recipe(n)
  local cfg = deepcopy(recipe.config.micro)
  cfg.model.vocab_size = VOCAB
  cfg.steps = steps
  sr.manual_seed(1)
  local ctx = {scale = "micro", config = cfg, device = "cpu", seed = 1, steps = steps,
               tokens_per_step = cfg.batch.B * cfg.batch.T}
  recipe.setup(ctx)
  return recipe, ctx, cfg
end

local micro_losses = {}
local clock = os.clock
local case = T.case
T.case = function(name, fn)
  local t0 = clock()
  case(name, fn)
  if os.getenv("SPEEDRUN_TEST_VERBOSE") then io.stderr:write(("%.2fs  %s\n"):format(clock() - t0, name)) end
end
for n = 1, 5 do
  T.case(("record_%02d: micro training lowers the loss; eval is fp32, causal"):format(n), function()
    local steps = 6
    local recipe, ctx, cfg = setup(n, steps)
    local B, Tn = cfg.batch.B, cfg.batch.T
    local losses = {}
    for s = 1, steps do
      local x, y = batch(B, Tn, s % 2)
      if recipe.schedule then recipe.schedule(ctx, s) end
      local l = recipe.train_step(ctx, s, {x = x, y = y, step = s})
      losses[s] = sr.is_tensor(l) and l:item() or l
      T.ok(losses[s] == losses[s], "finite loss")
    end
    micro_losses[n] = losses
    T.ok(losses[steps] < losses[1] - 0.3, ("loss %.4f -> %.4f should fall"):format(losses[1], losses[steps]))
    -- eval: [B, T, V] fp32, and a later token does not move earlier logits
    local x = batch(2, Tn, 0)
    local lg = sr.no_grad(recipe.eval, ctx, x)
    T.eq(table.concat(lg.shape, ","), ("2,%d,%d"):format(Tn, VOCAB))
    T.eq(lg.dtype, "float32")
    local ids = x:tolist()
    ids[1][Tn] = (ids[1][Tn] + 1) % VOCAB
    local lg2 = sr.no_grad(recipe.eval, ctx, sr.tensor(ids, {dtype = "int32"}))
    local d = F.max(F.abs(lg:narrow(2, 1, Tn - 1) - lg2:narrow(2, 1, Tn - 1))):item()
    T.ok(d < 1e-4, "causal: earlier logits moved by " .. d)
    local dlast = F.max(F.abs(lg:narrow(2, Tn, 1) - lg2:narrow(2, Tn, 1))):item()
    T.ok(dlast > 0, "the changed position's logits move")
  end)
end

T.case("parameter names follow the PyTorch state dicts", function()
  local want = {
    [1] = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
           "transformer.h.0.attn.c_proj.weight", "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"},
    [2] = {"transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.weight"},
    [5] = {"transformer.wte.weight", "transformer.h.0.attn.c_q.weight", "transformer.h.0.attn.c_k.weight",
           "transformer.h.0.attn.c_v.weight", "transformer.h.0.attn.c_proj.weight", "transformer.h.1.mlp.c_fc.weight"},
  }
  for n, names in pairs(want) do
    local _, ctx = setup(n, 1)
    local sd = ctx.model:state_dict()
    for _, name in ipairs(names) do T.ok(sd[name], ("record %d has %s"):format(n, name)) end
    local count = 0
    for _ in pairs(sd) do count = count + 1 end
    local per_block = n == 5 and 6 or 4
    T.eq(count, (n == 1 and 2 or 1) + 2 * per_block, "record " .. n .. " parameter count")
  end
  -- record 5: zero-init output projections, padded vocabulary in the real config
  local r5 = load_recipe(5)
  T.eq(r5.config.full.model.vocab_size, 50304)
  T.eq(r5.config.full.model.n_embd // r5.config.full.model.n_head, 128)
  local _, ctx = setup(5, 1)
  T.eq(F.max(F.abs(ctx.model:state_dict()["transformer.h.0.attn.c_proj.weight"])):item(), 0)
  T.eq(F.max(F.abs(ctx.model:state_dict()["transformer.h.1.mlp.c_proj.weight"])):item(), 0)
end)

-- singular values of X via the eigenvalues of S = X^T X (power iteration on S and on c I - S)
local function sv_range(X)
  X = F.cast(X, "float64")
  local S = F.matmul(X:transpose(1, 2), X)
  local n = S.shape[1]
  local function top(M)
    local v = sr.ones(n, 1, {dtype = "float64"})
    local lam = 0
    for _ = 1, 300 do
      local w = F.matmul(M, v)
      lam = F.norm(w):item()
      v = w / lam
    end
    return lam
  end
  local lmax = top(S)
  local I = {}
  for i = 1, n do I[i] = {} for j = 1, n do I[i][j] = i == j and lmax or 0 end end
  local lmin = lmax - top(sr.tensor(I, {dtype = "float64"}) - S)
  return math.sqrt(math.max(lmin, 0)), math.sqrt(lmax)
end

T.case("Muon's Newton-Schulz orthogonalises (records 3, 4, 5)", function()
  sr.manual_seed(7)
  for _, n in ipairs {3, 4, 5} do
    local ns = load_recipe(n).newton_schulz5
    for _, shape in ipairs {{48, 24}, {24, 48}, {64, 16}} do
      local G = sr.randn(shape[1], shape[2])
      local lo0, hi0 = sv_range(G)
      T.ok(hi0 / lo0 > 1.5, "the test matrix is not already orthogonal")
      local X = ns(G, 5)
      T.eq(table.concat(X.shape, ","), table.concat(G.shape, ","))
      T.eq(X.dtype, n == 5 and "bfloat16" or "float32")
      local lo, hi = sv_range(shape[1] > shape[2] and X or X:transpose(1, 2))
      T.ok(lo > 0.55 and hi < 1.35, ("record %d %dx%d: singular values in [%.3f, %.3f], want near 1"):format(
        n, shape[1], shape[2], lo, hi))
    end
  end
end)

T.case("rotary is a rotation: norms kept, scores depend on relative position only", function()
  sr.manual_seed(3)
  for _, n in ipairs {2, 5} do
    local r = load_recipe(n)
    local Tn, hd = 12, 16
    local cos, sin = r.rotary_tables(Tn, hd, "cpu")
    T.eq(table.concat(cos.shape, ","), ("1,%d,1,%d"):format(Tn, hd // 2))
    local tol = n == 5 and 2e-2 or 1e-5                       -- record 5 caches cos/sin in bf16
    -- the same q (and k) at every position: [1, T, 1, hd]
    local q = sr.randn(1, 1, 1, hd):expand(1, Tn, 1, hd):contiguous()
    local k = sr.randn(1, 1, 1, hd):expand(1, Tn, 1, hd):contiguous()
    local rq, rk = r.apply_rotary(q, cos, sin), r.apply_rotary(k, cos, sin)
    local nq, nrq = F.norm(q, -1):reshape(Tn):tolist(), F.norm(rq, -1):reshape(Tn):tolist()
    for t = 1, Tn do T.ok(math.abs(nq[t] - nrq[t]) <= tol * nq[t], "norm kept at position " .. t) end
    -- position 0 is the identity
    T.ok(F.max(F.abs(rq:narrow(2, 1, 1) - q:narrow(2, 1, 1))):item() <= tol, "no rotation at position 0")
    -- <R_s q, R_t k> depends on t - s only
    local S = F.matmul(rq:reshape(Tn, hd), rk:reshape(Tn, hd):transpose(1, 2)):tolist()
    local scale = F.norm(q:narrow(2, 1, 1)):item() * F.norm(k:narrow(2, 1, 1)):item()
    for s = 1, Tn - 3 do
      for d = 0, 3 do
        T.ok(math.abs(S[s][s + d] - S[1][1 + d]) <= 4 * tol * scale,
             ("score(%d, %d) = %.5f vs score(1, %d) = %.5f"):format(s, s + d, S[s][s + d], 1 + d, S[1][1 + d]))
      end
    end
  end
end)

-- end to end under the harness: the recipe contract, host validation and causality checks
T.case("record_05 runs under speedrun train --scale micro", function()
  local exe = arg[-1]
  local H = require "speedrun.harness_core"
  local data = require "speedrun.data"
  local json = require "speedrun.json"
  local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/records"
  os.execute("rm -rf '" .. tmp .. "'")
  H.mkdir(tmp .. "/data")
  local ids = {}
  for k = 1, 6000 do ids[k] = (k * 7) % 23 end
  assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", ids))
  assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", ids))
  local cmd = ("'%s' train ../tasks/record_05/recipe.lua --scale micro --device cpu --steps 3 --val-tokens 128 "
    .. "--train-files '%s/data/syn_train_*.bin' --val-files '%s/data/syn_val_*.bin' --out '%s/run' --quiet > '%s/out.txt' 2>&1")
    :format(exe, tmp, tmp, tmp, tmp)
  os.execute(cmd)
  local f = io.open(tmp .. "/run/results.json")
  T.ok(f, "results.json written: " .. (io.open(tmp .. "/out.txt") and io.open(tmp .. "/out.txt"):read("a") or ""))
  local r = json.decode(f:read("a"))
  f:close()
  T.eq(r.status, "valid", "status (" .. tostring(type(r.failure) == "table" and r.failure.message) .. ")")
  T.eq(r.name, "record_05")
  T.ok(r.checks.causality.ok and r.checks.eval_stateless.ok, "host checks pass")
  T.ok(r.metrics.val_loss < 10.6, "val loss below the micro target")
end)

for n, l in pairs(micro_losses) do
  io.write(("record_%02d micro losses:"):format(n))
  for _, v in ipairs(l) do io.write((" %.4f"):format(v)) end
  io.write("\n")
end
T.done()
