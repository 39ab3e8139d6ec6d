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

local R = dofile("harness/records_fixture.lua")
local VOCAB, batch, load_recipe, recipe_path, setup = R.VOCAB, R.batch, R.load_recipe, R.recipe_path, R.setup

local clock = os.clock
local case = T.case
T.case = function(name, fn)
  local t0 = clock()
  case(name, fn)
  if os.getenv("SPEEDRUN_TEST_VERBOSE") then io.stderr:write(("%.2fs  %s\n"):format(clock() - t0, name)) end
end
for n = 1, 5 do R.micro_case(n) end

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

R.harness_case(5, {steps = 3})

R.done()
