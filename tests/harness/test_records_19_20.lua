-- Records 19-20 (tasks/record_19, record_20) on the CPU: micro training lowers the loss on a flat
-- token stream with documents (eval fp32 [1, T, V'], causal); the mechanisms against hand-checked
-- values: record 19's FP8 head (forward and backward against F.linear on values exact in fp8, bf16
-- out, dX bf16, dW fp32; training through it, evaluation through the bf16 head), the offset
-- sigmoid softcap 30 sigmoid(z / 7.5) and its gradient, the cooldown to 0.1, the window (next
-- multiple of 128), the CastedLinear init, the padded head; record 20's merged QKV slices, the
-- batched Newton-Schulz with per-slice norms, the attention scale 0.12, the long and short
-- windows per layer (and the script's list cut against the block window), Adam eps 1e-10;
-- parameter names, configs; both records end to end under `speedrun train --scale micro`. The
-- micro runs use a 64-token vocabulary (head padded to 128) with token 0 as the document separator.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local has_attention = pcall(require, "speedrun.attention") and F.flex_attention ~= nil
local has_fp8 = F.to_fp8 ~= nil and F.scaled_mm ~= nil

local R = dofile("harness/records_fixture.lua")
local EOT, load_recipe, load_meta, stream, setup = R.EOT, R.load_recipe, R.load_meta, R.stream, R.setup_flat
local HEAD = 128

-- the record's layer layout on a small model: 12 layers of width 64, 3 tables, no attention in 7
local function twelve(cfg)
  cfg.model.n_layer, cfg.model.value_embeds, cfg.model.no_attn_layer = 12, 3, 7
end

local function maxdiff(a, b) return F.max(F.abs(F.cast(a, "float64") - F.cast(b, "float64"))):item() end
local function near(a, b, tol, what) T.ok(math.abs(a - b) <= tol, ("%s: %.9g vs %.9g"):format(what, a, b)) end

-- zero head: every logit 30 sigmoid(0) = 15, the first loss ln(head width)
local function in_0_30(lg) T.ok(-F.max(-lg):item() > 0 and F.max(lg):item() < 30, "logits inside (0, 30)") end
for _, n in ipairs {19, 20} do
  R.flat_micro_case(n, {skip = not (has_attention and has_fp8) and "flex attention or float8 not in this build",
                        head = HEAD, first_loss = true, check = in_0_30})
  R.graphable_case(n, {skip = not (has_attention and has_fp8) and "flex attention or float8 not in this build"})
end

-- inputs exact in fp8 after their scales: x integers in [-3, 3] (2 x in e4m3), W = j / 32 with j
-- in [-2, 2] (32 W in e4m3), the output gradient r = k 2^-24 with k in [-1, 1] (2^29 r = 32 k in
-- e5m2); every sum exact in bf16/fp32, so the FP8 path equals F.linear exactly
T.case("record 19 FP8 head: forward and backward equal F.linear on values exact in fp8", function()
  if not has_fp8 then T.skip("float8 not in this build") end
  local r = load_recipe(19)
  local M, K, N = 16, 32, 16
  local X, W, G = {}, {}, {}
  for i = 1, M do X[i] = {} for k = 1, K do X[i][k] = (3 * i + 5 * k) % 7 - 3 end end
  for j = 1, N do W[j] = {} for k = 1, K do W[j][k] = ((2 * j + k) % 5 - 2) / 32 end end
  for i = 1, M do G[i] = {} for j = 1, N do G[i][j] = ((i + 2 * j) % 3 - 1) * 2 ^ -24 end end
  local x = sr.tensor({X}, {dtype = "bfloat16", requires_grad = true})          -- [1, M, K]
  local w = sr.tensor(W, {requires_grad = true})                                  -- fp32 [N, K]
  local g = sr.tensor({G}, {dtype = "bfloat16"})
  local y = r.lm_head_fp8(x, w, r.config.full.fp8)
  T.eq(table.concat(y.shape, ","), ("1,%d,%d"):format(M, N))
  T.eq(y.dtype, "bfloat16")
  F.sum(F.mul(y, g)):backward()
  local x2 = sr.tensor({X}, {requires_grad = true})
  local w2 = sr.tensor(W, {requires_grad = true})
  local y2 = F.linear(x2, w2)
  F.sum(F.mul(y2, F.cast(g, "float32"))):backward()
  T.eq(maxdiff(y, y2), 0)
  T.eq(x.grad.dtype, "bfloat16")
  T.eq(maxdiff(x.grad, x2.grad), 0)
  T.eq(w.grad.dtype, "float32")
  T.eq(maxdiff(w.grad, w2.grad), 0)
  -- a hand-checked entry: y[1][1] = sum_k X[1][k] W[1][k]
  local s = 0
  for k = 1, K do s = s + X[1][k] * W[1][k] end
  T.eq(y:tolist()[1][1][1], s)
  -- the scales are the record's: x 2, W 32, grad 2^29
  T.eq(r.config.full.fp8.x_s, 2); T.eq(r.config.full.fp8.w_s, 32); T.eq(r.config.full.fp8.grad_s, 2 ^ 29)
  -- a value off the e4m3 grid is quantised: W = 0.3 -> 32 W = 9.6 -> 10 (e4m3 step 1 in [8, 16))
  local q = r.lm_head_fp8(sr.ones(16, 16, {dtype = "bfloat16"}) * 0.5, sr.ones(16, 16) * 0.3, r.config.full.fp8)
  near(q:tolist()[1][1], 16 * 0.5 * 10 / 32, 0, "16 x 0.5 x e4m3(9.6) / 32 = 2.5")
end)

T.case("record 19: training through the FP8 head, evaluation through the bf16 head", function()
  if not has_attention or not has_fp8 then T.skip("flex attention or float8 not in this build") end
  local recipe, ctx, cfg = setup(19, 4)
  local Tn = cfg.batch.T
  for s = 1, 3 do
    local x, y = stream(Tn, s % 2)
    recipe.schedule(ctx, s)
    recipe.train_step(ctx, s, {x = x, y = y, step = s})
  end
  local x, y = stream(Tn, 0)
  -- the training forward's loss against the CE of the eval logits: the FP8 head rounds x and W
  -- to e4m3, so the two differ a little
  local calls, orig = 0, F.scaled_mm
  F.scaled_mm = function(...) calls = calls + 1; return orig(...) end
  local ok, train_loss, lg = pcall(function()
    local _, l = sr.no_grad(function() return ctx.model(x, y, cfg, 1) end)
    T.eq(calls, 1, "training forward: one FP8 GEMM (the head)")
    local e = sr.no_grad(function() return ctx.model(x, nil, cfg, 1) end)
    T.eq(calls, 1, "evaluation: no FP8 GEMM")
    return l, e
  end)
  F.scaled_mm = orig
  assert(ok, train_loss)
  local eval_loss = F.cross_entropy(lg, y:reshape(1, Tn)):item()
  local d = math.abs(train_loss:item() - eval_loss)
  T.ok(d > 0 and d < 0.05, "fp8 training loss vs bf16 eval loss differ by " .. d)
  -- the eval logits: the bf16 head (W cast to bf16), softcapped in fp32
  T.eq(ctx.model.lm_head.weight.dtype, "float32")
  T.eq(lg.dtype, "float32")
end)

T.case("record 19 softcap: 30 sigmoid(z / 7.5) in fp32 (= 15 tanh(z / 15) + 15)", function()
  local r = load_recipe(19)
  local z = sr.tensor({0, 7.5, -15, 100, 1})
  local y = r.softcap(z:clone()):tolist()     -- in place over its fp32 copy (z itself when fp32)
  near(y[1], 15, 1e-6, "30 sigmoid(0)")
  near(y[2], 21.931757, 1e-4, "30 sigmoid(1)")
  near(y[3], 3.5761809, 1e-4, "30 sigmoid(-2)")
  T.ok(y[4] < 30 and y[4] > 29.999, "saturates below 30")
  near(y[5], 15 * math.tanh(1 / 15) + 15, 1e-4, "15 tanh(z / 15) + 15")
  -- bf16 logits come out fp32 (cast first)
  T.eq(r.softcap(F.cast(z, "bfloat16")).dtype, "float32")
  -- its gradient: 4 sigmoid(u) (1 - sigmoid(u)), u = z / 7.5: 1 at 0, 0.786448 at 7.5
  local zz = sr.tensor({0, 7.5}):requires_grad_()
  F.sum(r.softcap(zz * 1)):backward()
  local gr = zz.grad:tolist()
  near(gr[1], 1, 1e-6, "d/dz at 0")
  local s1 = 1 / (1 + math.exp(-1))
  near(gr[2], 4 * s1 * (1 - s1), 1e-5, "d/dz at 7.5 = 0.786448")
  T.eq(load_recipe(20).softcap(z:clone()):tolist()[2], y[2])
end)

T.case("records 19/20 schedules: cooldown to 0.1 over the last 40 %; window next multiple of 128 >= 1728 f", function()
  for _, n in ipairs {19, 20} do
    local r = load_recipe(n)
    local N = r.config.full.steps
    T.eq(r.lr_multiplier(0, N, 0.4, 0.1), 1.0)
    local it = N - math.floor(0.4 * N)                 -- t just above 0.4: still 1
    T.eq(r.lr_multiplier(it - 1, N, 0.4, 0.1), 1.0)
    local t = 1 / N                                     -- the last step
    near(r.lr_multiplier(N - 1, N, 0.4, 0.1), t / 0.4 + (1 - t / 0.4) * 0.1, 1e-12, "the last step")
    near(r.lr_multiplier(N, N, 0.4, 0.1), 0.1, 1e-12, "the end: 0.1")
    near(r.lr_multiplier(N - 0.2 * N, N, 0.4, 0.1), 0.55, 1e-9, "t = 0.2: w = 0.5 -> 0.55")
    local c = r.config.full
    T.eq(r.window_at(c, 0, N), 1)                       -- next_multiple_of_n(0) = 128
    local last1 = math.floor(128 * N / 1728)            -- 1728 it / N <= 128
    T.eq(r.window_at(c, last1, N), 1)
    T.eq(r.window_at(c, last1 + 1, N), 2)
    T.eq(r.window_at(c, N // 2, N), 7)                  -- 1728 x 0.5 = 864 -> 896
    T.eq(r.window_at(c, N, N), 14)                      -- 1728 -> 1792
    T.eq(math.type(r.window_at(c, 3, N)), "integer")
    T.eq(r.window_at(r.config.micro, 0, 20), 1)
    T.eq(r.window_at(r.config.micro, 20, 20), 2)
  end
  local r19 = load_recipe(19)
  T.eq(r19.window_at(r19.config.full, 103, 1395), 1)  -- 127.59
  T.eq(r19.window_at(r19.config.full, 104, 1395), 2)  -- 128.83
  local recipe, ctx = setup(19, 10)
  recipe.schedule(ctx, 10)                            -- it = 9: t = 0.1 -> w = 0.25 -> 0.325
  near(ctx.muon.lr:item(), 0.05 * 0.325, 1e-9, "Muon lr 0.05 x 0.325")
  T.eq(ctx.window_blocks:item(), 2)                   -- 256 x 0.9 = 230.4 -> 256
end)

T.case("record 19: CastedLinear init U(+-sqrt(3) 0.5 / sqrt(fan_in)); tables V 50257, head 50304", function()
  local r = load_recipe(19)
  near(r.init_bound(768), 1 / 32, 1e-15, "sqrt(3) 0.5 / sqrt(768) = 1/32")
  local _, ctx = setup(19, 1)
  local sd = ctx.model:state_dict()
  local b = r.init_bound(64)
  for _, name in ipairs {"blocks.0.attn.c_q.weight", "blocks.0.mlp.c_fc.weight"} do
    local m = F.max(F.abs(sd[name])):item()
    T.ok(m <= b and m > 0.9 * b, ("%s within +-%.5f: max %.5f"):format(name, b, m))
  end
  T.eq(F.max(F.abs(sd["blocks.0.attn.c_proj.weight"])):item(), 0)
  T.eq(F.max(F.abs(sd["lm_head.weight"])):item(), 0)
  T.eq(r.padded_vocab(50257), 50304)
  T.eq(table.concat(sd["embed.weight"].shape, ","), "64,64")
  T.eq(table.concat(sd["lm_head.weight"].shape, ","), "128,64")
  T.eq(r.config.full.model.vocab_size, 50257)
  -- Adam: head, embed, scalars
  T.ok(ctx.adam.groups[1].params[1] == ctx.model.lm_head.weight, "the head's group first")
  T.eq(ctx.adam.groups[1].lr, 0.008); T.eq(ctx.adam.groups[2].lr, 0.6); T.eq(ctx.adam.groups[3].lr, 0.04)
  T.eq(ctx.adam.groups[1].eps, 1e-8)
end)

T.case("record 20 merged QKV: qkv_w [3, C, C]; q, k, v = x W_q^T, x W_k^T, x W_v^T by head groups", function()
  local r = load_recipe(20)
  local C, H, Tn = 8, 2, 4
  local Wt = {}
  for s = 1, 3 do
    Wt[s] = {}
    for i = 1, C do Wt[s][i] = {} for j = 1, C do Wt[s][i][j] = ((s * 7 + i * 3 + j) % 5 - 2) / 4 end end
  end
  local X = {}
  for t = 1, Tn do X[t] = {} for j = 1, C do X[t][j] = (t + 2 * j) % 3 - 1 end end
  local w, x = sr.tensor(Wt), sr.tensor({X})
  local q, k, v = r.qkv_split(x, w, H)
  for s, y in ipairs {q, k, v} do
    T.eq(table.concat(y.shape, ","), ("1,%d,%d,%d"):format(Tn, H, C // H))
    T.eq(maxdiff(y, F.linear(x, w:select(1, s)):view(1, Tn, H, C // H)), 0)
  end
  -- one entry by hand: k[t = 2, head 2, d = 1] = sum_j X[2][j] W_k[5][j] (row H hd/... = 4 + 1)
  local s = 0
  for j = 1, C do s = s + X[2][j] * Wt[2][5][j] end
  T.eq(k:tolist()[1][2][2][1], s)
  -- the module: no c_q/c_k/c_v, qkv_w fp32 U(+-sqrt(3) 0.5 / sqrt(C)), trained by Muon
  local _, ctx = setup(20, 1)
  local sd = ctx.model:state_dict()
  local qkv = sd["blocks.0.attn.qkv_w"]
  T.eq(table.concat(qkv.shape, ","), "3,64,64")
  T.eq(qkv.dtype, "float32")
  T.ok(not sd["blocks.0.attn.c_q.weight"], "no c_q")
  local m, b = F.max(F.abs(qkv)):item(), r.init_bound(64)
  T.ok(m <= b and m > 0.9 * b, "qkv_w within the bound")
  local in_muon = false
  for _, g in ipairs(ctx.muon.groups) do for _, p in ipairs(g.params) do in_muon = in_muon or p == qkv end end
  T.ok(in_muon, "qkv_w is a Muon matrix")
  for _, p in ipairs(ctx.scalar_params) do T.ok(p:dim() < 2, "scalars are under 2-D") end
end)

T.case("record 20 batched Newton-Schulz: each slice normalised by its own norm, as the 2-D iteration", function()
  local r = load_recipe(20)
  sr.manual_seed(3)
  local G = sr.randn(3, 8, 16)
  local scaled = F.cat({G:narrow(1, 1, 1), G:narrow(1, 2, 1) * 100, G:narrow(1, 3, 1) * 0.01}, 1)
  -- slice norms by hand: ones * a -> a sqrt(R C)
  local ones = F.cat({sr.ones(1, 4, 4), sr.ones(1, 4, 4) * 2, sr.ones(1, 4, 4) * 3}, 1)
  local nr = r.slice_norms(ones)
  T.eq(table.concat(nr.shape, ","), "3,1,1")
  T.eq(maxdiff(nr:reshape(3), sr.tensor({4, 8, 12})), 0)
  local Y = r.newton_schulz5(scaled, 5)
  T.eq(Y.dtype, "bfloat16")
  T.eq(table.concat(Y.shape, ","), "3,8,16")
  for s = 1, 3 do
    -- each slice is the 2-D iteration of that slice (its own norm) ...
    T.eq(maxdiff(Y:select(1, s), r.newton_schulz5(scaled:select(1, s), 5)), 0, "slice " .. s)
    -- ... so the slice's scale drops out (up to the bf16 rounding of the scaled input)
    local d = maxdiff(Y:select(1, s), r.newton_schulz5(G:select(1, s), 5))
    T.ok(d < 0.05, ("slice %d against its unscaled iteration: %g"):format(s, d))
  end
  -- a global norm would shrink the 0.01 slice to nothing: its rows stay near unit singular values
  local rn = F.norm(F.cast(Y:select(1, 3), "float32")):item()
  T.ok(rn > 2 and rn < 3.5, "orthogonalised: Frobenius norm near sqrt(8), got " .. rn)
  -- tall slices: transposed over the last two dims
  local Yt = r.newton_schulz5(G:transpose(2, 3), 5)
  T.eq(table.concat(Yt.shape, ","), "3,16,8")
  T.ok(maxdiff(Yt:select(1, 2), r.newton_schulz5(G:select(1, 2):transpose(1, 2), 5)) == 0, "tall slice")
  -- record 19's 2-D iteration agrees on a matrix
  T.eq(maxdiff(load_recipe(19).newton_schulz5(G:select(1, 2), 5), r.newton_schulz5(G:select(1, 2), 5)), 0)
end)

T.case("record 20: attention scale 0.12; layers L S S S L S | S L S S S L; short = max(n // 2, 1)", function()
  if not has_attention or not has_fp8 then T.skip("flex attention or float8 not in this build") end
  local r = load_recipe(20)
  local kinds = r.layer_windows(12)
  T.eq(table.concat(kinds, " "), "long short short short long short short long short short short long")
  T.eq(table.concat(r.layer_windows(4), " "), "long short short long")
  T.eq(r.short_window(1), 1); T.eq(r.short_window(3), 1); T.eq(r.short_window(14), 7); T.eq(r.short_window(7), 3)
  local recipe, ctx, cfg = setup(20, 1, twelve)
  T.eq(cfg.attn_scale, 0.12)
  T.eq(r.config.full.attn_scale, 0.12)
  -- every attention call: the scale and the mask's window (layer 7 has no attention)
  local seen, orig = {}, F.flex_attention
  F.flex_attention = function(q, k, v, mask, o)
    seen[#seen + 1] = {scale = o and o.scale, window = mask.window_blocks}
    return orig(q, k, v, mask, o)
  end
  local ok, err = pcall(function()
    local x = stream(256, 0)
    sr.no_grad(function() return ctx.model(x, nil, cfg, {6, 3}) end)
  end)
  F.flex_attention = orig
  assert(ok, err)
  T.eq(#seen, 11)
  local ws = {}
  for i, s in ipairs(seen) do T.eq(s.scale, 0.12, "call " .. i); ws[i] = s.window end
  T.eq(table.concat(ws, " "), "6 3 3 3 6 3 3 3 3 3 6")
  -- the schedule fills both device windows
  local rc, c2 = setup(20, 20)
  rc.schedule(c2, 1)
  T.eq(c2.window_blocks:item(), 1); T.eq(c2.short_blocks:item(), 1)
  rc.schedule(c2, 20)
  T.eq(c2.window_blocks:item(), 2); T.eq(c2.short_blocks:item(), 1)
  -- Adam eps 1e-10 in every group
  for _, g in ipairs(c2.adam.groups) do T.eq(g.eps, 1e-10) end
end)

-- the script cuts the kv-block lists sorted newest first: partial to max(n - full, 1), full to n - 1
-- (full the uncut count); on the record's masks that keeps the blocks less than n behind the
-- query block, and n = 0 keeps the diagonal block (window 1)
T.case("record 20: the script's cut of the block lists equals the block window (n = 0 -> 1)", function()
  if not has_attention then T.skip("flex attention not in this build") end
  local A = require "speedrun.attention"
  local r = load_recipe(20)
  local Tn, block = 1024, 128
  local NB = Tn // block
  for _, period in ipairs {23, 97, 300, 2000} do
    local ids = {}
    for t = 1, Tn do ids[t] = t % period == 0 and EOT or 1 + t % 13 end
    local docs = r.document_ids(sr.tensor(ids, {dtype = "int32"}), EOT, block)
    local base = A.block_mask {T = Tn, block = block, causal = true, doc_ids = docs}
    local kn, ki = base.kv_num_blocks:tolist(), base.kv_indices:tolist()
    local fn, fi = base.full_kv_num_blocks:tolist(), base.full_kv_indices:tolist()
    for n = 0, NB do
      local m = A.block_mask {T = Tn, block = block, causal = true, doc_ids = docs, window_blocks = math.max(n, 1)}
      local mkn, mki = m.kv_num_blocks:tolist(), m.kv_indices:tolist()
      local mfn, mfi = m.full_kv_num_blocks:tolist(), m.full_kv_indices:tolist()
      for q = 1, NB do
        local function cut(num, idx, keep)
          local s = {}
          for j = num, math.max(num - keep + 1, 1), -1 do s[#s + 1] = idx[j] end   -- newest first
          table.sort(s)
          return table.concat(s, ",")
        end
        local function listed(num, idx) return cut(num, idx, num) end
        local want_p = cut(kn[q], ki[q], math.min(kn[q], math.max(n - fn[q], 1)))
        local want_f = cut(fn[q], fi[q], math.max(math.min(fn[q], n - 1), 0))
        T.eq(listed(mkn[q], mki[q]), want_p, ("period %d n %d q %d partial"):format(period, n, q))
        T.eq(listed(mfn[q], mfi[q]), want_f, ("period %d n %d q %d full"):format(period, n, q))
      end
    end
  end
end)

T.case("parameter names follow the PyTorch state dicts", function()
  local common = {"embed.weight", "blocks.0.attn.lambdas", "blocks.1.lambdas", "blocks.7.mlp.c_fc.weight",
                  "blocks.11.attn.c_proj.weight", "value_embeds.embed.0.weight", "value_embeds.embed.2.weight",
                  "skip_weights", "lm_head.weight"}
  for _, n in ipairs {19, 20} do
    local _, ctx = setup(n, 1, twelve)
    local sd = ctx.model:state_dict()
    for _, name in ipairs(common) do T.ok(sd[name], ("record %d has %s"):format(n, name)) end
    local qkv = n == 20 and {"blocks.0.attn.qkv_w"} or {"blocks.0.attn.c_q.weight", "blocks.0.attn.c_k.weight",
                                                         "blocks.0.attn.c_v.weight"}
    for _, name in ipairs(qkv) do T.ok(sd[name], ("record %d has %s"):format(n, name)) end
    T.ok(not sd["blocks.7.attn.lambdas"], "no attention in block 7")
    local count = 0
    for _ in pairs(sd) do count = count + 1 end
    -- 11 attention blocks x (5 or 3) + 12 x (MLP 2 + lambdas 1) + embed + 3 tables + head + skip weights
    T.eq(count, 11 * (n == 20 and 3 or 5) + 12 * 3 + 6, "record " .. n)
  end
end)

T.case("configs: the record's shapes and steps, the proxy ladder's target, seq batches", function()
  for _, n in ipairs {19, 20} do
    local r, meta = load_recipe(n), load_meta(n)
    local full, proxy = r.config.full, r.config.proxy
    T.eq(full.steps, meta.steps, "full steps of record " .. n)
    T.eq(meta.benchmark.n_steps, meta.steps)
    T.eq(full.batch.mode, "seq")
    T.eq(full.batch.T, meta.tokens_per_step)
    T.eq(full.micro_batch, 65536)
    T.eq(full.val_batch.T, 65536)
    T.eq(full.val_tokens % full.val_batch.T, 0)
    T.eq(proxy.target_val_loss, 5.3)
    T.eq(proxy.val_tokens, 262144)
    T.ok(math.type(proxy.steps) == "integer", "proxy steps: tuned (test_calibration_files checks them against calibration-h100.json)")
    T.eq(proxy.val_tokens % proxy.val_batch.T, 0)
    for _, s in ipairs {"micro", "proxy", "full"} do
      local c = r.config[s]
      T.eq((c.micro_batch or c.batch.T) % c.block, 0, s .. " T is a multiple of the block")
      T.eq(c.model.n_embd % 16, 0, s .. " width a multiple of 16 (F.scaled_mm)")
      T.eq(r.padded_vocab(c.model.vocab_size) % 16, 0)
      T.eq(c.cooldown_frac, 0.4); T.eq(c.final_lr, 0.1)
      T.eq(c.model.vocab_size, 50257)
      for _, k in ipairs(r.schedule_keys) do T.ok(c[k], s .. " has schedule key " .. k) end
      if n == 20 then T.eq(c.adam_eps, 1e-10); T.eq(c.attn_scale, 0.12) end
    end
    T.eq(full.model.n_layer, 12)
    T.eq(full.model.n_embd, 768)
    T.eq(full.model.value_embeds, 3)
    T.eq(full.model.no_attn_layer, 7)
    T.eq(full.window_hi, 1728)
  end
  T.eq(load_recipe(19).config.full.steps, 1395)
  T.eq(load_recipe(20).config.full.steps, 1393)
end)

-- end to end under the harness: the seq loader (EOTs every 61 tokens), host validation and the
-- causality check, validation below the micro target
for _, n in ipairs {19, 20} do
  R.harness_case(n, {steps = 4, val_tokens = 512, documents = true,
                     skip = not (has_attention and has_fp8) and "flex attention or float8 not in this build"})
end


R.done()
