-- Records 6, 7, 8 (tasks/record_06..08) on the CPU at micro scale, in the style of test_records.lua:
-- each trains for a few steps on a synthetic token stream and its loss goes down; eval gives
-- fp32 logits [B, T, V] and is causal; parameter names follow the PyTorch state dicts. Then each
-- new mechanism with hand-checked values:
--   * record 6's distributed Muon with world size 1 gives record 5's update bit for bit (shapes
--     whose scale is a power of 2, so the bf16 scaling is exact), and ownership by index splits
--     the work: with world size 2 each rank computes every other matrix, zeros elsewhere, and the
--     two halves add up to the one-process update;
--   * record 7 is record 6's recipe (only the name and the header differ);
--   * record 8's Muon shape scale sqrt(max(1, rows/cols)) (2 for a 4C x C matrix, 1 otherwise;
--     record 6: sqrt(max(rows, cols))), its untied zero-init head (first loss ln V, the first
--     step moves only the head, by the Adam lr), and the RMSNorm after the embedding (the logits
--     do not depend on the scale of the embedding table).
-- The micro configs are used with a 64-token vocabulary for speed.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local R = dofile("harness/records_fixture.lua")
local VOCAB, batch, load_recipe, recipe_path = R.VOCAB, R.batch, R.load_recipe, R.recipe_path
local function setup(n, steps, seed) return R.setup(n, steps, {seed = seed}) end

local function maxdiff(a, b) return F.max(F.abs(F.cast(a, "float64") - F.cast(b, "float64"))):item() end
local function maxabs(a) return F.max(F.abs(F.cast(a, "float64"))):item() end

for _, n in ipairs {6, 7, 8} do R.micro_case(n) end

T.case("parameter names follow the PyTorch state dicts; configs", function()
  for _, n in ipairs {6, 7, 8} do
    local _, ctx = setup(n, 1)
    local sd = ctx.model:state_dict()
    local names = {"transformer.wte.weight", "transformer.h.0.attn.c_q.weight", "transformer.h.0.attn.c_k.weight",
                   "transformer.h.0.attn.c_v.weight", "transformer.h.0.attn.c_proj.weight",
                   "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"}
    if n == 8 then names[#names + 1] = "lm_head.weight" end
    for _, name in ipairs(names) do T.ok(sd[name], ("record %d has %s"):format(n, name)) end
    local count = 0
    for _ in pairs(sd) do count = count + 1 end
    T.eq(count, (n == 8 and 2 or 1) + 2 * 6, "record " .. n .. " parameter count")
  end
  -- the records' numbers at full and proxy scale
  local r6, r8 = load_recipe(6), load_recipe(8)
  for _, r in ipairs {r6, r8} do
    local f = r.config.full
    T.eq(f.model.vocab_size, 50304)
    T.eq(f.model.n_embd // f.model.n_head, 128)
    T.eq(f.batch.B * f.batch.T, 524288)
    local p = r.config.proxy
    T.eq(p.model.n_layer .. "x" .. p.model.n_embd .. " T" .. p.batch.T .. " B" .. p.batch.B, "6x384 T256 B32")
    T.eq(p.target_val_loss, 5.3)
    T.eq(p.val_tokens, 262144)
    -- the proxy's warmdown is the record's fraction of its steps, to a step (a tuned budget scales
    -- the proxy's own phases: harness/tune.lua)
    local want = f.warmdown / f.steps * p.steps
    T.ok(math.abs(p.warmdown - want) < 1, ("warmdown %d for %.2f"):format(p.warmdown, want))
  end
  T.eq(r6.config.full.steps .. "/" .. r6.config.full.warmdown, "5100/1450")
  T.eq(r6.config.full.muon_lr, 3.6e-4)
  T.eq(r8.config.full.steps .. "/" .. r8.config.full.warmdown, "4578/1308")
  T.eq(r8.config.full.embed_lr, 0.3)
  T.eq(r8.config.full.head_lr, 0.002)
  T.eq(r8.config.full.muon_lr, 0.02)
  local _, ctx = setup(8, 1)
  T.eq(#ctx.adam.groups, 2, "two Adam groups")
  T.eq(ctx.adam.groups[1].params[1], ctx.model.transformer.wte.weight)
  T.eq(ctx.adam.groups[1].lr, 0.3)
  T.eq(ctx.adam.groups[2].params[1], ctx.model.lm_head.weight)
  T.eq(ctx.adam.groups[2].lr, 0.002)
  T.eq(ctx.adam.groups[2].weight_decay, 0)
  T.eq(ctx.adam.groups[1].betas[1] .. "," .. ctx.adam.groups[1].betas[2], "0.9,0.95")
end)

T.case("record 7 is record 6's recipe (only the name, the header comment and the tuned proxy budget differ)", function()
  -- the proxy budget (steps, and the warmdown scaled with it) is each reference's own tune
  -- (tasks/CALIBRATION.md): 87 steps for record 6, 81 for record 7, the same code
  local function body(n)
    local src = assert(io.open(recipe_path(n))):read("a")
    repeat local n0 = #src; src = src:gsub("^%-%-[^\n]*\n", "") until #src == n0   -- the header comment
    local a, b = src:find("\n%s*proxy = {.-\n%s*},?\n")
    assert(a, "record " .. n .. ": no proxy scale")
    local proxy = src:sub(a, b):gsub("steps = %d+", "steps = N"):gsub("warmdown = %d+", "warmdown = N")
    return (src:sub(1, a - 1) .. proxy .. src:sub(b + 1)):gsub('name = "record_0%d"', 'name = "record_NN"')
  end
  T.ok(body(6) == body(7), "records 6 and 7 have the same code")
  T.eq(load_recipe(7).name, "record_07")
end)

-- the same random gradients on the Muon matrices of two set-ups
local function set_grads(params_list, seed)
  sr.manual_seed(seed)
  local gs = {}
  for i, p in ipairs(params_list[1]) do gs[i] = sr.randn(table.unpack(p.shape)) end
  for _, ps in ipairs(params_list) do
    for i, p in ipairs(ps) do p.grad = gs[i]:clone() end
  end
end

T.case("record 6's distributed Muon, world size 1: record 5's update bit for bit", function()
  -- micro: C 64, so every shape scale (sqrt 64 = 8, sqrt 256 = 16) is a power of 2 and the bf16
  -- scaling of record 6 is exact; the only other difference is where the scale is applied
  local _, c5 = setup(5, 4, 11)
  local r6, c6 = setup(6, 4, 11)
  local m5, m6 = c5.muon, c6.muon
  T.eq(m6.rank .. "/" .. m6.world_size, "0/1")
  T.eq(#m5.params, #m6.params)
  local w0 = {}
  for i, p in ipairs(m5.params) do
    T.eq(maxdiff(p, m6.params[i]), 0, "the same initial weights")
    w0[i] = p:clone()
  end
  for s = 1, 3 do                                       -- three steps: the momentum takes part
    set_grads({m5.params, m6.params}, 100 + s)
    r6.schedule(c5, s); r6.schedule(c6, s)
    m5:step(); m6:step()
  end
  for i, p in ipairs(m5.params) do
    T.eq(maxdiff(p, m6.params[i]), 0, "matrix " .. i .. " after three steps")
    T.ok(maxdiff(p, w0[i]) > 1e-4, "matrix " .. i .. " moved")
  end
  -- the flat buffer holds every matrix: 2 layers x (4 C^2 + 8 C^2)
  T.eq(m6.flat:numel(), 2 * 12 * 64 * 64)
  T.eq(m6.flat.dtype, "bfloat16")
end)

T.case("record 6's ownership by index: two ranks compute halves that add up to the update", function()
  local r6 = load_recipe(6)
  sr.manual_seed(5)
  local shapes = {{16, 4}, {4, 16}, {8, 8}, {16, 16}, {64, 16}}
  local function fresh()
    sr.manual_seed(5)
    local ps = {}
    for i, s in ipairs(shapes) do ps[i] = sr.randn(s[1], s[2]); ps[i].requires_grad = true end
    return ps
  end
  local p1, pa, pb = fresh(), fresh(), fresh()
  local one = r6.Muon(p1, 0.1, 0.95, 0, 1)
  local ra, rb = r6.Muon(pa, 0.1, 0.95, 0, 2), r6.Muon(pb, 0.1, 0.95, 1, 2)
  T.ok(ra:owns(1) and not ra:owns(2) and ra:owns(3) and ra:owns(5), "rank 0 of 2 owns matrices 0, 2, 4")
  T.ok(rb:owns(2) and rb:owns(4) and not rb:owns(1), "rank 1 of 2 owns matrices 1, 3")
  -- a stand-in collective that leaves each rank's buffer as it is: each rank then applies only
  -- its own updates, and the two results add up to the one-process step
  local seen = {}
  sr.dist = {all_reduce = function(buf, op) seen[#seen + 1] = op end}
  local ok, err = pcall(function()
    set_grads({p1, pa, pb}, 9)
    one:step(); ra:step(); rb:step()
  end)
  sr.dist = nil
  assert(ok, err)
  T.eq(table.concat(seen, ","), "sum,sum", "each rank all-reduces its buffer with SUM")
  local p0 = fresh()
  local at = 0
  for i, p in ipairs(p1) do
    local n = p:numel()
    local mine, other = (i % 2 == 1) and pa[i] or pb[i], (i % 2 == 1) and pb[i] or pa[i]
    T.eq(maxdiff(mine, p), 0, "the owner's update of matrix " .. i)
    T.eq(maxdiff(other, p0[i]), 0, "the other rank leaves matrix " .. i .. " alone")
    -- rank 0's buffer: its slices non-zero, the others zero
    local slice = ra.flat:narrow(1, at + 1, n)
    if i % 2 == 1 then T.ok(maxabs(slice) > 0, "slice " .. i .. " written") else T.eq(maxabs(slice), 0, "slice " .. i .. " zero") end
    at = at + n
  end
  T.ok(ra.bufs[pa[1]] and not ra.bufs[pa[2]], "momentum buffers only for owned matrices")
end)

T.case("Muon shape scale: record 8 sqrt(max(1, rows/cols)), record 6 sqrt(max(rows, cols))", function()
  -- momentum 0 and lr 1: the update is exactly s * NS(g), NS in bf16 (the recipes' newton_schulz5)
  for _, case in ipairs {{8, {16, 4}, 2}, {8, {4, 16}, 1}, {8, {8, 8}, 1}, {8, {64, 16}, 2},
                         {6, {16, 4}, 4}, {6, {4, 16}, 4}, {6, {8, 8}, math.sqrt(8)}} do
    local n, shape, s = case[1], case[2], case[3]
    local r = load_recipe(n)
    sr.manual_seed(21)
    local p = sr.zeros(shape[1], shape[2]); p.requires_grad = true
    local g = sr.randn(shape[1], shape[2])
    p.grad = g:clone()
    local m = r.Muon({p}, 1.0, 0.0)
    m:step()
    -- the same arithmetic by hand: bf16 NS output times s in bf16, cast to fp32, times -lr
    local want = F.cast(r.newton_schulz5(g, 5) * s, "float32") * -1
    T.eq(maxdiff(p, want), 0, ("record %d %dx%d: scale %.4f"):format(n, shape[1], shape[2], s))
  end
  -- the full-scale shapes of record 8: 2 for c_fc (3072 x 768), 1 for c_proj (768 x 3072) and C x C
  for _, sh in ipairs {{3072, 768, 2}, {768, 3072, 1}, {768, 768, 1}} do
    T.eq(math.sqrt(math.max(1, sh[1] / sh[2])), sh[3])
  end
end)

T.case("record 8: untied zero-init head, the first step moves only the head", function()
  local recipe, ctx, cfg = setup(8, 6)
  local model = ctx.model
  local wte, head = model.transformer.wte.weight, model.lm_head.weight
  T.ok(wte ~= head, "separate tensors")
  T.eq(table.concat(head.shape, ","), VOCAB .. "," .. cfg.model.n_embd)
  T.eq(maxabs(head), 0, "lm_head starts at zero")
  -- nn.Embedding's N(0, 1): the table's RMS is near 1 (64 x 64 draws)
  local rms = math.sqrt(F.mean(wte * wte):item())
  T.ok(math.abs(rms - 1) < 0.05, "embedding N(0, 1), rms " .. rms)
  -- zero head: every logit 0, the first loss is ln V
  local x, y = batch(cfg.batch.B, cfg.batch.T, 1)
  T.eq(maxabs(sr.no_grad(recipe.eval, ctx, x)), 0, "zero logits at init")
  local wte0 = wte:clone()
  local h0 = {}
  for i, p in ipairs(ctx.muon.params) do h0[i] = p:clone() end
  recipe.schedule(ctx, 1)
  local l1 = recipe.train_step(ctx, 1, {x = x, y = y, step = 1}):item()
  T.ok(math.abs(l1 - math.log(VOCAB)) < 1e-5, ("first loss %.6f = ln %d = %.6f"):format(l1, VOCAB, math.log(VOCAB)))
  -- the gradient reaches nothing but the head (it is zero), so Adam and Muon leave the rest alone;
  -- Adam's first step moves every head entry by lr * |g| / (|g| + eps) <= lr (multiplier 1 at step 1)
  T.eq(maxdiff(wte, wte0), 0, "embedding unchanged by step 1")
  for i, p in ipairs(ctx.muon.params) do T.eq(maxdiff(p, h0[i]), 0, "block matrix " .. i .. " unchanged by step 1") end
  local lr = cfg.head_lr * ctx.lr_mult(0)
  T.eq(ctx.lr_mult(0), 1)
  local hmax = maxabs(head)
  T.ok(hmax <= lr * (1 + 1e-6) and hmax > lr * 0.999, ("head moved by %.6g, Adam lr %.6g"):format(hmax, lr))
  -- from step 2 on the embedding and the blocks learn too
  recipe.schedule(ctx, 2)
  recipe.train_step(ctx, 2, {x = x, y = y, step = 2})
  T.ok(maxdiff(wte, wte0) > 0, "embedding moves at step 2")
end)

T.case("record 8: RMSNorm after the embedding (logits independent of the table's scale)", function()
  for _, n in ipairs {7, 8} do
    local recipe, ctx, cfg = setup(n, 2)
    local model = ctx.model
    sr.manual_seed(4)
    sr.no_grad(function()
      -- non-zero blocks and head, so the residual stream's scale would matter without the norm
      for _, p in ipairs(ctx.params) do
        if p ~= model.transformer.wte.weight then p:copy_(sr.randn(table.unpack(p.shape)) * 0.1) end
      end
    end)
    local x = batch(2, cfg.batch.T, 0)
    local lg = sr.no_grad(recipe.eval, ctx, x)
    sr.no_grad(function() model.transformer.wte.weight:mul_(64) end)  -- a power of 2: exact
    local lg2 = sr.no_grad(recipe.eval, ctx, x)
    local d, size = maxdiff(lg, lg2), maxabs(lg)
    if n == 8 then
      T.ok(d <= 1e-4 * size, ("record 8: logits move by %.3g (of %.3g) when the table is scaled"):format(d, size))
    else
      T.ok(d > 0.1 * size, ("record 7 (no norm, tied): logits move by %.3g (of %.3g)"):format(d, size))
    end
  end
end)

R.harness_case(8, {why = "20 steps: the zero head starts at ln V"})

R.done()
