-- Records 17-18 (tasks/record_17, record_18) on the CPU: micro training lowers the loss on a flat
-- token stream with documents (eval fp32 [1, T, V], causal); the mechanisms against hand-checked
-- values: the half-truncated rotary tables (zero frequencies in the second half, those pairs
-- unrotated; bf16-valued in record 17, fp32 in 18), the block without attention, the sparse value-embedding pattern (012 ... 012)
-- and the mix without a value embedding, Muon with a group count that is not a multiple of the
-- world size, the padded head; record 18's softcap 15, fp32 scalars on bf16 activations, the
-- fractional cooldown and the window; parameter names, configs; both records end to end under
-- `speedrun train --scale micro`. The micro runs use a 64-token vocabulary with token 0 as the
-- document separator.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local has_attention = pcall(require, "speedrun.attention") and F.flex_attention ~= nil

local R = dofile("harness/records_fixture.lua")
local load_recipe, load_meta, setup = R.load_recipe, R.load_meta, R.setup_flat
local EPS = 1.1920928955078125e-07

-- the record's layer layout on a small model: 12 layers of width 64, 3 tables, no attention in 7
local function twelve(cfg)
  cfg.model.n_layer, cfg.model.value_embeds, cfg.model.no_attn_layer = 12, 3, 7
end

local function full(shape, v) return sr.ones(shape) * v end

local function maxdiff(a, b) return F.max(F.abs(F.cast(a, "float64") - F.cast(b, "float64"))):item() end

-- the head's width at micro scale with the 64-token vocabulary: record 17 pads to 128
local HEAD = {[17] = 128, [18] = 64}

for _, n in ipairs {17, 18} do
  R.flat_micro_case(n, {skip = not has_attention and "speedrun.attention / F.flex_attention not in this build",
                        head = HEAD[n], first_loss = true})
  R.graphable_case(n, {skip = not has_attention and "speedrun.attention / F.flex_attention not in this build"})
end

T.case("half-truncated rotary: hd/4 frequencies (1/1024)^linspace(0, 1, hd/4), hd/4 zeros", function()
  local r17, r18 = load_recipe(17), load_recipe(18)
  -- record 18: fp32 tables
  local cos, sin = r18.rotary_tables(300, 128, "cpu")
  T.eq(cos.dtype, "float32")
  T.eq(table.concat(cos.shape, ","), "1,300,1,64")
  local c, s = cos:view(300, 64):tolist(), sin:view(300, 64):tolist()
  -- the zero half: columns 33..64 are cos 1, sin 0 at every position (exactly)
  local zeros_ok = true
  for t = 1, 300 do
    for i = 33, 64 do zeros_ok = zeros_ok and c[t][i] == 1 and s[t][i] == 0 end
  end
  T.ok(zeros_ok, "cos 1 and sin 0 in columns 33..64 at every position")
  -- hand values: column 1 has frequency 1 (angle t), column 32 frequency 1/1024, column 2
  -- (1/1024)^(1/31) = 0.79964...
  T.ok(math.abs(c[2][1] - 0.5403023) < 1e-6 and math.abs(s[2][1] - 0.8414710) < 1e-6, "t 1, column 1: cos 1, sin 1")
  T.ok(math.abs(c[11][1] - (-0.8390715)) < 1e-5, "t 10, column 1: cos 10")
  T.ok(math.abs(s[300][32] - math.sin(299 / 1024)) < 1e-6, "t 299, column 32: angle 299 / 1024")
  T.ok(math.abs(s[2][2] - math.sin(0.7996382)) < 1e-6, "t 1, column 2: angle 1024^(-1/31) = 0.79964")
  T.ok(c[1][1] == 1 and s[1][1] == 0, "t 0: no rotation")
  -- micro head dim 32: 8 frequencies, 8 zeros
  local cm, sm = r18.rotary_tables(4, 32, "cpu")
  local cl, sl = cm:view(4, 16):tolist(), sm:view(4, 16):tolist()
  T.ok(cl[4][9] == 1 and sl[4][9] == 0 and sl[4][8] ~= 0, "hd 32: column 8 rotates, column 9 is a zero frequency")
  T.ok(math.abs(sl[4][8] - math.sin(3 / 1024)) < 1e-6, "hd 32: column 8 has frequency 1/1024")
  -- record 17: the same tables rounded to bf16 (model.bfloat16() on the buffers), held in fp32
  local c17, s17 = r17.rotary_tables(300, 128, "cpu")
  T.eq(c17.dtype, "float32")
  T.eq(maxdiff(c17, F.cast(F.cast(cos, "bfloat16"), "float32")), 0)
  T.eq(maxdiff(s17, F.cast(F.cast(sin, "bfloat16"), "float32")), 0)
  T.ok(maxdiff(c17, cos) > 0 and maxdiff(c17, cos) < 4e-3, "bf16 rounding of the fp32 values")
  T.eq(c17:view(300, 64):tolist()[300][40], 1)
  T.eq(s17:view(300, 64):tolist()[300][40], 0)
  -- the rotation leaves the zero-frequency pairs (columns 33..64 and 97..128) unchanged
  for _, tab in ipairs {{cos, sin}, {c17, s17}} do
    local x = sr.randn(1, 300, 2, 128)
    local y = r17.apply_rotary(x, tab[1], tab[2])
    T.eq(maxdiff(y:narrow(4, 33, 32), x:narrow(4, 33, 32)), 0)
    T.eq(maxdiff(y:narrow(4, 97, 32), x:narrow(4, 97, 32)), 0)
    T.ok(maxdiff(y:narrow(4, 1, 32), x:narrow(4, 1, 32)) > 0.1, "the first 32 pairs rotate")
    -- fp32 rotation of bf16 inputs, cast back
    T.eq(r18.apply_rotary(F.cast(x, "bfloat16"), tab[1], tab[2]).dtype, "bfloat16")
  end
end)

T.case("record 17/18 value embeddings: tables 0, 1, 2 at both ends (012 ... 012), none between", function()
  for _, n in ipairs {17, 18} do
    local r = load_recipe(n)
    local function order(L, k)
      local o = {}
      for i = 1, L do o[i] = r.ve_index(i, L, k) and tostring(r.ve_index(i, L, k) - 1) or "-" end
      return table.concat(o, ",")
    end
    T.eq(order(12, 3), "0,1,2,-,-,-,-,-,-,0,1,2", "record " .. n)
    T.eq(order(4, 1), "0,-,-,0")
    T.eq(order(6, 1), "0,-,-,-,-,0")
  end
  -- the mix: v <- l0 v + l1 ve; without a value embedding v <- l0 v, l1 gets a zero gradient
  local r17 = load_recipe(17)
  local v, ve = full({2, 3}, 2.0), full({2, 3}, 4.0)
  local lam = sr.tensor({0.5, 0.25}):requires_grad_()
  T.eq(maxdiff(r17.value_mix(v, ve, lam), full({2, 3}, 2.0)), 0)     -- 0.5 2 + 0.25 4
  local y = r17.value_mix(v, nil, lam)
  T.eq(maxdiff(y, full({2, 3}, 1.0)), 0)                              -- 0.5 2
  F.sum(y):backward()
  local g = lam.grad:tolist()
  T.eq(g[1], 12)                                                          -- sum of v
  T.eq(g[2], 0)
  -- the model uses 3 tables and passes nil to blocks 3..8 (0-based)
  local _, ctx = setup(17, 1, twelve)
  T.eq(#ctx.model.ve_tables, 3)
  T.ok(ctx.model:ve_of({"a", "b", "c"}, 1) == "a" and ctx.model:ve_of({"a", "b", "c"}, 12) == "c", "blocks 0 and 11")
  T.ok(ctx.model:ve_of({"a", "b", "c"}, 4) == nil and ctx.model:ve_of({"a", "b", "c"}, 9) == nil, "blocks 3 and 8: none")
end)

T.case("record 17/18: block 7 has no attention (MLP and the shortcut mix only)", function()
  for _, n in ipairs {17, 18} do
    local r, ctx = setup(n, 1, twelve)
    local sd = ctx.model:state_dict()
    T.ok(sd["blocks.7.lambdas"] and sd["blocks.7.mlp.c_fc.weight"] and sd["blocks.7.mlp.c_proj.weight"], "block 7 keeps its MLP")
    T.ok(not sd["blocks.7.attn.c_q.weight"] and not sd["blocks.7.attn.lambdas"], "block 7 has no attention parameters")
    T.ok(sd["blocks.6.attn.c_q.weight"] and sd["blocks.8.attn.c_q.weight"], "blocks 6 and 8 attend")
    local layer = ctx.model.layers[8]
    T.ok(layer.attn == nil, "no attn child")
    -- its forward: x1 = l0 x + l1 x0, y = x1 + mlp(norm(x1)); no mask or rotary needed
    sr.no_grad(function()
      layer.mlp.c_proj.weight:copy_(sr.randn(64, 256) * 0.1)
      layer.lambdas:copy_(sr.tensor({0.75, 0.5}))
    end)
    local x, x0 = F.cast(sr.randn(1, 8, 64), "bfloat16"), F.cast(sr.randn(1, 8, 64), "bfloat16")
    local y = sr.no_grad(function() return layer(x, nil, x0, nil, nil) end)
    local want = sr.no_grad(function()
      local x1 = r.shortcut(x, x0, layer.lambdas)
      return x1 + layer.mlp(F.rms_norm(x1, nil, EPS))
    end)
    T.eq(maxdiff(y, want), 0)
    -- Muon's groups: 11 x 4 square matrices (not a multiple of 8 ranks), 12 x 2 MLP matrices
    local sizes = {}
    for _, g in ipairs(ctx.muon.groups) do sizes[#sizes + 1] = g.size .. "x" .. #g.params end
    T.eq(table.concat(sizes, ","), "4096x44,16384x24", "record " .. n)
  end
end)

T.case("record 17 Muon: a group count that is not a multiple of the world size", function()
  local r = load_recipe(17)
  local saved = sr.dist
  -- a stub collective: every rank's slot receives this rank's update (one process plays rank 1 of 2)
  sr.dist = {all_gather = function(bufs, u) bufs[1], bufs[2] = u, u; return bufs end}
  local ok, err = pcall(function()
    local ps = {sr.zeros(4, 4), sr.zeros(4, 4), sr.zeros(4, 4)}
    local g = sr.tensor({{1, 0, 0, 0}, {0, 2, 0, 0}, {0, 0, 3, 0}, {0, 0, 0, 4}})
    for _, p in ipairs(ps) do p.grad = g end
    local M = r.Muon(ps, 0.1, 0.5, 1, 2)
    M:step()
    -- round 1: rank 1 orthogonalises ps[2]; both ranks' slots hold it, ps[1] and ps[2] take it;
    -- round 2: rank 1 has no matrix (ps[4]): a zero placeholder, only ps[3] is updated (by rank 0's slot)
    local want = F.cast(r.newton_schulz5(g * 0.75, 5), "float32") * -0.1
    T.ok(maxdiff(ps[2], want) < 1e-7 and maxdiff(ps[1], want) < 1e-7, "ps[1], ps[2] = -lr NS(0.75 g)")
    T.eq(maxdiff(ps[3], sr.zeros(4, 4)), 0, "ps[3] took the placeholder (zeros)")
    T.eq(M.bufs[ps[1]], nil, "rank 1 keeps no momentum for rank 0's matrices")
  end)
  sr.dist = saved
  assert(ok, err)
  -- one process: every matrix of an odd-sized group is updated
  local ps = {sr.zeros(4, 4), sr.zeros(4, 4), sr.zeros(4, 4)}
  for _, p in ipairs(ps) do p.grad = sr.randn(4, 4) end
  r.Muon(ps, 0.1, 0.5):step()
  for i = 1, 3 do T.ok(F.norm(ps[i]):item() > 0, "matrix " .. i .. " updated") end
end)

T.case("record 17: embedding tables V 50257, head padded to a multiple of 128", function()
  local r = load_recipe(17)
  T.eq(r.padded_vocab(50257), 50304)
  T.eq(r.padded_vocab(50304), 50304)
  T.eq(r.padded_vocab(64), 128)
  local _, ctx = setup(17, 1)
  local sd = ctx.model:state_dict()
  T.eq(table.concat(sd["embed.weight"].shape, ","), "64,64")
  T.eq(table.concat(sd["value_embeds.embed.0.weight"].shape, ","), "64,64")
  T.eq(table.concat(sd["lm_head.weight"].shape, ","), "128,64")
  local _, ctx18 = setup(18, 1)
  T.eq(table.concat(ctx18.model:state_dict()["lm_head.weight"].shape, ","), "64,64")
end)

T.case("record 18 softcap: 15 tanh(z / 15) (record 17: 30)", function()
  local r17, r18 = load_recipe(17), load_recipe(18)
  local z = sr.tensor({0, 15, -30, 100, 1})
  local y = r18.softcap(z:clone()):tolist()   -- in place: it consumes its argument
  T.eq(y[1], 0)
  T.ok(math.abs(y[2] - 11.42391) < 1e-4, "15 tanh(1) = 11.42391, got " .. y[2])
  T.ok(math.abs(y[3] + 14.46041) < 1e-4, "15 tanh(-2) = -14.46041, got " .. y[3])
  T.ok(y[4] < 15 and y[4] > 14.99, "saturates below 15")
  T.ok(math.abs(y[5] - 0.99852) < 1e-4, "15 tanh(1/15) = 0.99852")
  T.ok(math.abs(r17.softcap(sr.tensor({30})):item() - 22.84782) < 1e-4, "record 17: 30 tanh(1) = 22.84782")
  -- its gradient: 1 - tanh^2(z / 15)
  local zz = sr.tensor({15}):requires_grad_()
  F.sum(r18.softcap(zz * 1)):backward()
  T.ok(math.abs(zz.grad:item() - (1 - math.tanh(1) ^ 2)) < 1e-5, "d/dz = 1 - tanh^2(1) = 0.41997")
  -- bf16 logits stay bf16
  T.eq(r18.softcap(F.cast(z, "bfloat16")).dtype, "bfloat16")
end)

T.case("record 18: fp32 scalars as 0-d tensors keep the bf16 activations bf16", function()
  local r18 = load_recipe(18)
  local _, ctx = setup(18, 1)
  local sd = ctx.model:state_dict()
  for name, dt in pairs {["blocks.0.lambdas"] = "float32", ["blocks.0.attn.lambdas"] = "float32",
                         ["skip_weights"] = "float32", ["embed.weight"] = "bfloat16",
                         ["value_embeds.embed.0.weight"] = "bfloat16", ["blocks.0.attn.c_q.weight"] = "float32",
                         ["lm_head.weight"] = "float32"} do
    T.eq(sd[name].dtype, dt, name)
  end
  local _, ctx17 = setup(17, 1)
  T.eq(ctx17.model:state_dict()["blocks.0.lambdas"].dtype, "bfloat16", "record 17's scalars are bf16")
  local x, x0 = F.cast(full({1, 4, 8}, 2.0), "bfloat16"), F.cast(full({1, 4, 8}, 4.0), "bfloat16")
  local lam = sr.tensor({0.75, 0.5})
  local s = r18.shortcut(x, x0, lam)
  T.eq(s.dtype, "bfloat16")
  T.eq(maxdiff(s, full({1, 4, 8}, 3.5)), 0)                           -- 0.75 2 + 0.5 4
  T.eq(r18.value_mix(x, x0, lam).dtype, "bfloat16")
  T.eq(r18.value_mix(x, nil, lam).dtype, "bfloat16")
  T.eq(r18.unet_skip(x, x0, lam:select(1, 2)).dtype, "bfloat16")
  -- one Adam (embed, head, scalars) and Muon
  T.eq(#ctx.optimizers, 2)
  T.ok(ctx.optimizers[1] == ctx.adam and ctx.optimizers[2] == ctx.muon, "Adam, then Muon")
end)

T.case("record 18 schedules: lr 1 then linear to 0 over the last 40 %; window floor(((1 - f) 128 + f 1856) / 128)", function()
  local r = load_recipe(18)
  local N = 1390
  T.eq(r.lr_multiplier(0, N, 0.4), 1.0)
  T.eq(r.lr_multiplier(834, N, 0.4), 1.0)                                -- t = 0.4 exactly
  T.ok(math.abs(r.lr_multiplier(835, N, 0.4) - (555 / 1390) / 0.4) < 1e-12, "t = 555 / 1390 -> 0.99820")
  T.ok(math.abs(r.lr_multiplier(1389, N, 0.4) - 0.0017986) < 1e-6, "the last step: (1 / 1390) / 0.4")
  local c = r.config.full
  T.eq(r.window_at(c, 0, N), 1)
  T.eq(r.window_at(c, 102, N), 1)                                        -- 128 + 126.80 = 254.8
  T.eq(r.window_at(c, 103, N), 2)                                        -- 128 + 128.05 = 256.05
  T.eq(r.window_at(c, 695, N), 7)                                        -- (64 + 928) / 128 = 7.75
  T.eq(r.window_at(c, N, N), 14)                                         -- 1856 / 128 = 14.5
  T.eq(math.type(r.window_at(c, 3, N)), "integer")
  -- the micro window: 1 -> 2 blocks
  T.eq(r.window_at(r.config.micro, 0, 20), 1)
  T.eq(r.window_at(r.config.micro, 20, 20), 2)
  -- the schedule reaches the optimizers and the window tensor
  local recipe, ctx = setup(18, 10)
  recipe.schedule(ctx, 1)
  T.eq(ctx.window_blocks:item(), 1)
  recipe.schedule(ctx, 10)                                               -- it = 9: t = 0.1 -> 0.25
  T.ok(math.abs(ctx.muon.lr:item() - 0.05 * 0.25) < 1e-9, "Muon lr 0.05 x 0.25")
  T.eq(ctx.window_blocks:item(), 2)                                      -- (12.8 + 288) / 128 = 2.35
end)

T.case("parameter names follow the PyTorch state dicts", function()
  local want = {"embed.weight", "blocks.0.attn.lambdas", "blocks.0.attn.c_q.weight", "blocks.1.lambdas",
                "blocks.7.mlp.c_fc.weight", "blocks.11.attn.c_proj.weight", "value_embeds.embed.0.weight",
                "value_embeds.embed.2.weight", "skip_weights", "lm_head.weight"}
  for _, n in ipairs {17, 18} do
    local _, ctx = setup(n, 1, twelve)
    local sd = ctx.model:state_dict()
    for _, name in ipairs(want) do T.ok(sd[name], ("record %d has %s"):format(n, name)) end
    T.ok(not sd["value_embeds.embed.3.weight"], "three tables only")
    local count = 0
    for _ in pairs(sd) do count = count + 1 end
    -- 11 attention blocks x 5 + 12 x (MLP 2 + lambdas 1) + embed + 3 tables + head + skip weights
    T.eq(count, 11 * 5 + 12 * 3 + 6, "record " .. n)
  end
end)

T.case("configs: the record's shapes and steps, the proxy ladder's target, seq batches", function()
  for _, n in ipairs {17, 18} do
    local r, meta = load_recipe(n), load_meta(n)
    local full, proxy = r.config.full, r.config.proxy
    T.eq(full.steps, meta.steps, "full steps of record " .. n)
    T.eq(full.batch.mode, "seq")
    T.eq(full.batch.T, meta.tokens_per_step)
    T.eq(full.micro_batch, 65536)
    T.eq(full.val_batch.T, 65536)
    T.eq(full.val_tokens % full.val_batch.T, 0)
    T.eq(proxy.target_val_loss, 5.3)
    T.eq(proxy.val_tokens, 262144)
    T.eq(proxy.val_tokens % proxy.val_batch.T, 0)
    for _, s in ipairs {"micro", "proxy", "full"} do
      local c = r.config[s]
      T.eq((c.micro_batch or c.batch.T) % c.block, 0, s .. " T is a multiple of the block")
      T.ok(c.model.no_attn_layer < c.model.n_layer and 2 * c.model.value_embeds <= c.model.n_layer, s .. " layout")
      for _, k in ipairs(r.schedule_keys) do T.ok(c[k], s .. " has schedule key " .. k) end
    end
    T.eq(full.model.n_layer, 12)
    T.eq(full.model.value_embeds, 3)
    T.eq(full.model.no_attn_layer, 7)
    T.eq(meta.benchmark.n_steps, meta.steps)
  end
  T.eq(load_recipe(17).config.full.model.vocab_size, 50257)
  T.eq(load_recipe(17).config.full.cooldown, 600)
  T.eq(load_recipe(18).config.full.model.vocab_size, 50304)
  T.eq(load_recipe(18).config.full.cooldown_frac, 0.4)
end)

-- end to end under the harness: the seq loader (EOTs every 61 tokens), host validation and the
-- causality check, validation below the micro target
for _, n in ipairs {17, 18} do
  R.harness_case(n, {steps = 4, val_tokens = 512, documents = true, skip = not has_attention and "speedrun.attention not in this build"})
end

R.done()
