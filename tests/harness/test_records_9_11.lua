-- Records 9-11 (tasks/record_09..11) on the CPU at micro scale: each trains for a few steps on a
-- synthetic token stream and its loss goes down; eval gives fp32 logits [B, T, V] and is causal;
-- parameter names, shapes and dtypes follow the PyTorch state dicts. Each new mechanism is checked
-- against hand-computed values: the value residual (record 9), the embedding shortcut, the logit
-- softcap, the Muon momentum warmup, the bf16 model with bf16 Adam states (records 10-11), the U-net
-- skips and the B = bA + cA^2 Newton-Schulz form (record 11). Record 11 also runs end to end under
-- the harness (speedrun train --scale micro) on synthetic shards.
-- The micro configs are used with a 64-token vocabulary for speed (the recipes' own micro scale
-- keeps the records' vocabulary so it also runs on the real corpora).
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local R = dofile("harness/records_fixture.lua")
local VOCAB, batch, load_recipe = R.VOCAB, R.batch, R.load_recipe
local function setup(n, steps, edit) return R.setup(n, steps, {edit = edit}) end

local function close(a, b, tol, what)
  T.ok(math.abs(a - b) <= tol, ("%s: %.6f, want %.6f (tol %g)"):format(what, a, b, tol))
end

local function all_close(t, want, tol, what)
  local got = F.cast(t, "float64"):reshape(-1):tolist()
  T.eq(#got, #want, what .. " size")
  for i = 1, #want do close(got[i], want[i], tol, ("%s[%d]"):format(what, i)) end
end

for _, n in ipairs {9, 10, 11} do
  R.micro_case(n, function(lg) T.ok(F.max(F.abs(lg)):item() <= 30, "softcapped logits lie in [-30, 30]") end)
end

T.case("parameter names, shapes, dtypes and optimizer groups follow the scripts", function()
  for _, n in ipairs {9, 10, 11} do
    local _, ctx, cfg = setup(n, 1)
    local sd = ctx.model:state_dict()
    local low = n == 9 and "float32" or "bfloat16"        -- record 10+: model.bfloat16()
    local want = {
      ["transformer.wte.weight"] = {VOCAB .. ",64", low}, ["lm_head.weight"] = {VOCAB .. ",64", "float32"},
      ["transformer.h.0.lambdas"] = {"2", low}, ["transformer.h.1.attn.lamb"] = {"", low},
      ["transformer.h.0.attn.c_v.weight"] = {"64,64", "float32"}, ["transformer.h.1.mlp.c_fc.weight"] = {"256,64", "float32"},
    }
    if n == 11 then want.skip_weights = {"1", "bfloat16"} end
    for name, sd_want in pairs(want) do
      local p = sd[name]
      T.ok(p, ("record %d has %s"):format(n, name))
      T.eq(table.concat(p.shape, ","), sd_want[1], ("record %d %s shape"):format(n, name))
      T.eq(p.dtype, sd_want[2], ("record %d %s dtype"):format(n, name))
    end
    local count = 0
    for _ in pairs(sd) do count = count + 1 end
    T.eq(count, 2 + 8 * cfg.model.n_layer + (n == 11 and 1 or 0), "record " .. n .. " parameter count")
    -- init: lamb 0.5, lambdas (1, 0), zero head; skip weights 1
    all_close(sd["transformer.h.0.attn.lamb"], {0.5}, 0, "lamb init")
    all_close(sd["transformer.h.1.lambdas"], {1, 0}, 0, "lambdas init")
    T.eq(F.max(F.abs(sd["lm_head.weight"])):item(), 0, "zero-init head")
    if n == 11 then all_close(sd.skip_weights, {1}, 0, "skip weights init") end
    -- one Adam (AdamW without decay, the script's three fused Adams) in three groups: wte, head,
    -- scalars; record 10+ keeps the state in each parameter's dtype (bf16 wte and scalars, fp32
    -- head); Muon on the block matrices
    local scal = ctx.scalar_params
    T.eq(#ctx.optimizers, 2)
    T.eq(ctx.optimizers[1], ctx.adam)
    T.eq(#ctx.adam.groups, 3, "Adam groups")
    local g = ctx.adam.groups
    T.eq(g[1].params[1], ctx.model.transformer.wte.weight, "the embedding group")
    T.eq(g[2].params[1], ctx.model.lm_head.weight, "the head group")
    T.eq(g[3].params, scal, "the scalar group")
    T.eq(#g[1].params .. "/" .. #g[2].params, "1/1")
    for k, lr in ipairs {cfg.embed_lr, cfg.head_lr, cfg.scalar_lr} do
      T.eq(g[k].lr, lr, "group " .. k .. " lr")
      T.eq(g[k].betas[1] .. "/" .. g[k].betas[2] .. "/" .. g[k].eps .. "/" .. g[k].weight_decay, "0.9/0.95/1e-08/0",
           "group " .. k .. ": torch.optim.Adam(betas=(0.9, 0.95)), eps 1e-8, no decay")
      T.eq(g[k].state_dtype, n == 9 and "float32" or "param", "group " .. k .. " state dtype")
    end
    T.eq(#ctx.muon.params, 6 * cfg.model.n_layer, "Muon: the 2-D block matrices")
    T.eq(#scal, 2 * cfg.model.n_layer + (n == 11 and 1 or 0), "the scalar Adam group")
    for _, p in ipairs(ctx.muon.params) do T.eq(p:dim(), 2) end
    for _, p in ipairs(scal) do T.ok(p:dim() < 2, "scalars have fewer than 2 dims") end
  end
  -- the full configs: record 11 doubles the learning rates of record 10, the head's is 4x
  local r9, r10, r11 = load_recipe(9).config.full, load_recipe(10).config.full, load_recipe(11).config.full
  T.eq(r9.steps .. "/" .. r9.warmdown, "3200/914")
  T.eq(r10.steps .. "/" .. r10.warmdown, "3242/926")
  T.eq(r11.steps .. "/" .. r11.warmdown, "3000/900")
  for _, k in ipairs {"embed_lr", "head_lr", "muon_lr", "scalar_lr"} do
    T.eq(r10[k], r9[k], k .. " unchanged by record 10")
    local f = k == "head_lr" and 4 or 2                    -- 0.002 -> 0.008 in the script
    close(r11[k], f * r10[k], 1e-12, k .. " scaled by record 11")
  end
end)

T.case("value residual: v <- (1 - lamb) v + lamb v1, with d lamb = sum(dy (v1 - v))", function()
  local r = load_recipe(9)
  local v = sr.tensor({{1, 2}, {3, -4}})
  local v1 = sr.tensor({{5, 0}, {-1, 2}})
  local lamb = sr.tensor(0.25):requires_grad_()
  local y = r.value_residual(v, v1, lamb)
  all_close(y, {2, 1.5, 2, -2.5}, 1e-6, "mix")              -- 0.75 v + 0.25 v1
  local dy = sr.tensor({{1, -1}, {2, 0.5}})
  F.sum(y * dy):backward()
  -- sum(dy (v1 - v)) = 4 + 2 - 8 + 3 = 1
  close(lamb.grad:item(), 1, 1e-6, "d lamb")
  -- block 0 (v1 = v): the identity, whatever lamb
  all_close(r.value_residual(v, v, sr.tensor(0.8)), {1, 2, 3, -4}, 1e-6, "block 0")
  -- bf16 V (autocast) with an fp32 lamb: the mix comes back in V's dtype
  local vb = F.cast(v, "bfloat16")
  local yb = r.value_residual(vb, F.cast(v1, "bfloat16"), sr.tensor(0.25))
  T.eq(yb.dtype, "bfloat16")
  all_close(yb, {2, 1.5, 2, -2.5}, 1e-6, "bf16 mix")
end)

T.case("embedding shortcut: lambdas[1] x + lambdas[2] x0, identity at init", function()
  local r = load_recipe(9)
  local x = sr.tensor({{{1, -2, 3}}})
  local x0 = sr.tensor({{{4, 0.5, -1}}})
  all_close(r.shortcut(x, x0, sr.tensor({1, 0})), {1, -2, 3}, 0, "init (1, 0)")
  local lam = sr.tensor({0.5, 2}):requires_grad_()
  local y = r.shortcut(x, x0, lam)
  all_close(y, {8.5, 0, -0.5}, 1e-6, "(0.5, 2)")
  F.sum(y * sr.tensor({{{1, 2, -1}}})):backward()
  -- d lambdas = (sum(dy x), sum(dy x0)) = (1 - 4 - 3, 4 + 1 + 1)
  all_close(lam.grad, {-6, 6}, 1e-6, "d lambdas")
  -- record 10: all bf16
  local yb = load_recipe(10).shortcut(F.cast(x, "bfloat16"), F.cast(x0, "bfloat16"), sr.tensor({0.5, 2}, {dtype = "bfloat16"}))
  T.eq(yb.dtype, "bfloat16")
  all_close(yb, {8.5, 0, -0.5}, 1e-6, "bf16 shortcut")
end)

T.case("logit softcap: 30 tanh(z / 30) and its derivative 1 - tanh^2(z / 30)", function()
  local r = load_recipe(9)
  local z = sr.tensor({0, 30, -60, 3000}):requires_grad_()
  local y = r.softcap(z * 1)                 -- in place: it consumes the head's output, not a leaf
  local t1, t2 = math.tanh(1), math.tanh(2)
  all_close(y, {0, 30 * t1, -30 * t2, 30}, 1e-4, "softcap")
  F.sum(y):backward()
  all_close(z.grad, {1, 1 - t1 * t1, 1 - t2 * t2, 0}, 1e-5, "d softcap")
  -- bf16 logits stay bf16 (records 9-10: the cap is applied before the fp32 cast)
  local yb = r.softcap(F.cast(sr.tensor({30, -3000}), "bfloat16"))
  T.eq(yb.dtype, "bfloat16")
  all_close(yb, {30 * t1, -30}, 0.1, "bf16 softcap")
  -- in place over the logits: one [N, V] buffer more (its output) where z / 30, tanh and 30 tanh
  -- out of place made three, while recording gradients as in training
  for n = 9, 11 do
    local w = sr.randn(64, 4096):requires_grad_()
    local logits = w * 2
    collectgarbage()
    sr.reset_peak_memory()
    local before = sr.memory().current
    local capped = load_recipe(n).softcap(logits)
    T.ok(sr.memory().peak - before <= 64 * 4096 * 4 + 4096, ("record %d: one new buffer at the peak, got %d bytes"):format(
      n, sr.memory().peak - before))
    F.sum(capped):backward()
    T.eq(w.grad.shape[1], 64)
  end
end)

T.case("Muon momentum warmup: 0.85 -> 0.95 over the first 500 steps", function()
  for _, n in ipairs {9, 10, 11} do
    local r = load_recipe(n)
    local c = r.config.full
    close(r.muon_momentum(c, 0), 0.85, 1e-12, "it 0")
    close(r.muon_momentum(c, 250), 0.90, 1e-12, "it 250")
    close(r.muon_momentum(c, 500), 0.95, 1e-12, "it 500")
    close(r.muon_momentum(c, 3000), 0.95, 1e-12, "after the warmup")
    T.ok(r.schedule_keys[3] == "momentum_warmup", "the warmup scales with --scale-schedule")
  end
  -- the schedule writes it into Muon's device tensor before each step
  local r, ctx = setup(9, 20)
  r.schedule(ctx, 1)
  close(ctx.muon.momentum:item(), 0.85, 1e-7, "step 1")
  r.schedule(ctx, 3)                          -- micro: momentum_warmup = 3, it = 2
  close(ctx.muon.momentum:item(), 0.85 + 0.1 * 2 / 3, 1e-7, "step 3")
  r.schedule(ctx, 10)
  close(ctx.muon.momentum:item(), 0.95, 1e-7, "step 10")
end)

-- records 10-11: one optim.AdamW with state_dtype = "param": the bf16 wte and scalars keep bf16
-- m and v, the fp32 head fp32 ones; each group is one fused adamw_multi_ call; the lr multiplier
-- of the schedule reaches every group. The first step equals a float64 reference from the stored
-- values (m = 0.1 g, v = 0.05 g^2, p - lr m / bc1 / (sqrt(v) / sqrt(bc2) + eps)) rounded once to
-- each tensor's dtype, and by hand moves every element by lr |g| / (|g| + eps), i.e. by ~lr.
for _, n in ipairs {10, 11} do
  T.case(("record_%02d: Adam with bf16 states for the bf16 parameters, the update in fp32"):format(n), function()
    local H = require "speedrun.harness_core"
    local r, ctx, cfg = setup(n, 4)          -- micro warmdown 6 > 4 steps: step 1's multiplier is 4/6
    local opt = ctx.adam
    local x, y = batch(cfg.batch.B, cfg.batch.T, 0)
    r.schedule(ctx, 1)
    local mult = 4 / 6
    for k, lr in ipairs {cfg.embed_lr, cfg.head_lr, cfg.scalar_lr} do
      close(opt.groups[k].lr, lr * mult, 1e-15, "group " .. k .. " lr after the schedule")
    end
    local _, loss = ctx.model(x, y)
    loss:backward()
    local params = {}
    for _, grp in ipairs(opt.groups) do for _, p in ipairs(grp.params) do params[#params + 1] = {p, grp} end end
    local before = {}
    for i, e in ipairs(params) do
      local p = e[1]
      T.ok(p.grad, "every Adam parameter has a gradient")
      T.eq(p.grad.dtype, p.dtype, "the gradient in the parameter's dtype")
      before[i] = {p = F.cast(p, "float64"), g = F.cast(p.grad, "float64")}
    end
    opt:step()
    for i, e in ipairs(params) do
      local p, grp = e[1], e[2]
      local st = opt.state[p]
      local want = p == ctx.model.lm_head.weight and "float32" or "bfloat16"
      T.eq(p.dtype, want, "param dtype")
      T.eq(st.m.dtype .. "/" .. st.v.dtype, want .. "/" .. want, "state dtypes (the parameter's)")
      -- float64 reference, rounded once to the stored dtype
      local p0, g = before[i].p, before[i].g
      local lr, b1, b2, eps = grp.lr, 0.9, 0.95, 1e-8
      local m = F.mul(g, 1 - b1)
      local v = F.mul(F.mul(g, 1 - b2), g)
      local upd = F.div(F.mul(m, lr / (1 - b1)), F.add(F.div(F.sqrt(v), math.sqrt(1 - b2)), eps))
      local p1 = F.sub(p0, upd)
      local rel = want == "float32" and 1e-6 or 0        -- the fp32 head: float arithmetic
      local function d(a, ref)
        local dd = F.max(F.abs(F.cast(a, "float64") - F.cast(F.cast(ref, want), "float64"))):item()
        return dd, rel * F.max(F.abs(ref)):item()
      end
      for _, c in ipairs {{"param", p, p1}, {"exp_avg", st.m, m}, {"exp_avg_sq", st.v, v}} do
        local dd, tol = d(c[2], c[3])
        T.ok(dd <= tol, ("%s %d equals the float64 step rounded once: off by %g"):format(c[1], i, dd))
      end
      -- by hand: m / bc1 = g and sqrt(v / bc2) = |g|, so each element moves by lr |g| / (|g| + eps)
      -- (0 where g = 0), to the rounding of the stored parameter
      local moved = F.abs(F.cast(p, "float64") - p0)
      local absg = F.abs(g)
      local err = F.max(F.abs(moved - F.div(F.mul(absg, lr), F.add(absg, eps)))):item()
      local q = want == "float32" and 2 ^ -20 or 2 ^ -8      -- a few fp32 ulps (float arithmetic); one bf16 ulp
      T.ok(err <= q * F.max(F.abs(p0) + lr):item(), ("param %d moves by lr |g| / (|g| + eps): off by %g"):format(i, err))
    end
    -- step 2: one fused call per group (bf16 wte, fp32 head, the bf16 scalars)
    opt:zero_grad()
    local _, loss2 = ctx.model(x, y)
    loss2:backward()
    local tr = H.trace_start()
    opt:step()
    H.trace_stop()
    T.eq(tr:count(), 3, "one adamw_multi_ per group")
    T.eq(ctx.model.blocks[1].attn.c_q.weight.dtype, "float32", "CastedLinear master stays fp32")
  end)
end

T.case("record 11: U-net skips pair decoder block i with encoder block L/2 - 1 - i", function()
  local r = load_recipe(11)
  -- the skip itself: x + w skip, d w = sum(dy skip)
  local w = sr.tensor({2}):requires_grad_()
  local y = r.unet_skip(sr.tensor({1, -1}), sr.tensor({3, 4}), w)
  all_close(y, {7, 7}, 0, "x + w skip")
  F.sum(y * sr.tensor({1, 2})):backward()
  close(w.grad:item(), 11, 0, "d skip weight")
  -- in the model: 4 layers, every block replaced by x -> x + i (1-based), skip weights (2, 3).
  -- encoder: e1 = x0 + 1, e2 = x0 + 3; decoder: in3 = e2 + 2 e2 = 3 x0 + 9, out3 = 3 x0 + 12;
  -- in4 = out3 + 3 e1 = 6 x0 + 15 (bf16 stream: tolerances of a few bf16 ulps at |x| ~ 20-40)
  local _, ctx = setup(11, 1, function(c) c.model.n_layer = 4 end)
  local m = ctx.model
  T.eq(m.encoder_layers .. "/" .. m.decoder_layers, "2/2")
  local inputs = {}
  for i, b in ipairs(m.blocks) do
    b.forward = function(_, x, v1) inputs[i] = x; return x + i, v1 end
  end
  sr.no_grad(function() m.skip_weights:copy_(sr.tensor({2, 3})) end)
  local idx = batch(1, 8, 0)
  sr.no_grad(m.forward, m, idx)
  local x0 = F.cast(F.rms_norm(F.embedding(idx, m.transformer.wte.weight), nil, 1.1920928955078125e-07), "float32")
  local function dist(a, b) return F.max(F.abs(F.cast(a, "float32") - b)):item() end
  T.ok(dist(inputs[1], x0) < 1e-6, "block 1 gets x0")
  T.ok(dist(inputs[2], x0 + 1) < 0.02, "block 2 gets e1")
  T.ok(dist(inputs[3], 3 * x0 + 9) < 0.3, "block 3 gets e2 + 2 e2: " .. dist(inputs[3], 3 * x0 + 9))
  T.ok(dist(inputs[4], 6 * x0 + 15) < 0.6, "block 4 gets out3 + 3 e1: " .. dist(inputs[4], 6 * x0 + 15))
end)

T.case("record 11: Newton-Schulz in the B = bA + cA^2 form", function()
  -- one iteration on diag(0.6, 0.8) (Frobenius norm 1): s -> a s + b s^3 + c s^5
  local a, b, c = 3.4445, -4.7750, 2.0315
  local function f(s) return a * s + b * s ^ 3 + c * s ^ 5 end
  for _, n in ipairs {10, 11} do
    local ns = load_recipe(n).newton_schulz5
    local X = ns(sr.tensor({{0.6, 0}, {0, 0.8}}), 1)
    T.eq(X.dtype, "bfloat16")
    all_close(X, {f(0.6), 0, 0, f(0.8)}, 0.02, ("record %d one NS step"):format(n))
  end
  -- five steps on a random tall and a wide matrix: the two forms agree to bf16 rounding, and the
  -- result is near-orthogonal (X^T X close to I for tall X: diagonal in [0.3, 1.9])
  sr.manual_seed(11)
  local ns10, ns11 = load_recipe(10).newton_schulz5, load_recipe(11).newton_schulz5
  for _, shape in ipairs {{32, 16}, {16, 32}} do
    local G = sr.randn(shape[1], shape[2])
    local X10, X11 = F.cast(ns10(G, 5), "float32"), F.cast(ns11(G, 5), "float32")
    local rel = F.norm(X10 - X11):item() / F.norm(X10):item()
    T.ok(rel < 0.05, ("%dx%d: the forms differ by %.4f"):format(shape[1], shape[2], rel))
    local tall = shape[1] > shape[2] and X11 or X11:transpose(1, 2)
    local d = F.matmul(tall:transpose(1, 2), tall):tolist()
    for i = 1, #d do T.ok(d[i][i] > 0.3 and d[i][i] < 1.9, ("diag %d of X^T X: %.3f"):format(i, d[i][i])) end
  end
end)

R.harness_case(11, {steps = 3})

R.done()
