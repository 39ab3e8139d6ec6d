-- Records 12-16 (tasks/record_12..16) on the CPU: micro training lowers the loss on a flat token
-- stream with documents (eval fp32 [1, T, V], causal); the mechanisms against hand-checked
-- values: document ids from EOT positions, the masks against brute force, the window warmup
-- (record 13) and the block window (record 16), the value-embedding order of the U-net (records
-- 14-16), record 15's EMA momentum, size groups and block lists, record 16's full/partial split,
-- parameter names, the configs; one record end to end under `speedrun train` (seq loader).
-- The micro runs use a 64-token vocabulary with token 0 as the document separator.
local sr = require "speedrun"
local T = require "speedrun.testing"
local F = sr.F

local has_attention = pcall(require, "speedrun.attention") and F.flex_attention ~= nil

local R = dofile("harness/records_fixture.lua")
local EOT, load_recipe, load_meta, setup = R.EOT, R.load_recipe, R.load_meta, R.setup_flat

for n = 12, 16 do
  R.flat_micro_case(n, {skip = not has_attention and "speedrun.attention / F.flex_attention not in this build"})
  R.graphable_case(n, {skip = not has_attention and "speedrun.attention / F.flex_attention not in this build"})
end

T.case("document ids: the cumulative EOT count (F.cumsum)", function()
  local r = load_recipe(12)
  local ids = {}
  for i = 1, 16 do ids[i] = (i == 1 or i == 4 or i == 5 or i == 12) and 50256 or i end
  local d = r.document_ids(sr.tensor(ids, {dtype = "int32"}), 50256, 4)
  T.eq(d.dtype, "int32")
  T.eq(table.concat(d:tolist(), ","), "1,1,1,2,3,3,3,3,3,3,3,4,4,4,4,4")
  -- a longer random stream against a running count (several chunk rows, row offsets exercised)
  local long, want, c = {}, {}, 0
  for i = 1, 1024 do
    long[i] = (i * 37) % 11 == 0 and 7 or i % 5
    if long[i] == 7 then c = c + 1 end
    want[i] = c
  end
  local got = r.document_ids(sr.tensor(long, {dtype = "int32"}), 7, 128, {}):tolist()
  T.eq(table.concat(got, ","), table.concat(want, ","))
end)

-- the token-level mask M(i, j) by brute force (1-based positions)
local function brute(docs, T_, allow)
  local out = {}
  for i = 1, T_ do for j = 1, T_ do out[(i - 1) * T_ + j] = allow(i, j, docs) and 1 or 0 end end
  return out
end
local function same(a, b)
  for i = 1, #a do if a[i] ~= b[i] then return false, i end end
  return #a == #b
end

T.case("record 12/13/15 masks: causal AND same document AND q - k < window, as brute force", function()
  if not has_attention then T.skip("speedrun.attention not in this build") end
  local Tn, W = 256, 40
  local ids = {}
  for i = 1, Tn do ids[i] = (i % 37 == 5 or i == 130) and EOT or 1 + i % 9 end
  local r12, r15 = load_recipe(12), load_recipe(15)
  local docs = r12.document_ids(sr.tensor(ids, {dtype = "int32"}), EOT, 128)
  local dl = docs:tolist()
  local want = brute(dl, Tn, function(i, j, d) return j <= i and d[i] == d[j] and i - j < W end)
  local c = {block = 128, window = W}
  local m12 = r12.make_mask(c, Tn, docs, "cpu"):dense():view(-1):tolist()
  T.ok(same(m12, want), "record 12 mask")
  local m13 = load_recipe(13).make_mask(c, Tn, docs, "cpu", W):dense():view(-1):tolist()
  T.ok(same(m13, want), "record 13 mask")
  -- record 15 also limits the blocks to ceil(W / 128) back: with W < 128 only the diagonal block
  -- (a query early in its block loses the previous block's tokens, as in the script)
  local want15 = brute(dl, Tn, function(i, j, d)
    return j <= i and d[i] == d[j] and i - j < W and (i - 1) // 128 - (j - 1) // 128 < (W + 127) // 128
  end)
  local m15 = r15.make_mask({block = 128}, Tn, docs, "cpu", W):dense():view(-1):tolist()
  T.ok(same(m15, want15), "record 15 mask (kv-block lists)")
  T.ok(not same(want15, want), "the block limit matters here")
  local m15w = r15.make_mask({block = 128}, Tn, docs, "cpu", 200):dense():view(-1):tolist()
  T.ok(same(m15w, brute(dl, Tn, function(i, j, d) return j <= i and d[i] == d[j] and i - j < 200 end)),
       "record 15 mask, window 200 (at T 256 every block pair is within ceil(200/128) = 2: the token window decides)")
end)

T.case("record 15 block lists: per-block document ranges, block causal, window in blocks", function()
  local r = load_recipe(15)
  -- the recipe's lists (device tensors) as Lua values: the counts and the rows packed as int32
  local function lists(lo, hi, window, block)
    local num, idx = r.block_lists(sr.tensor(lo, {dtype = "int32"}), sr.tensor(hi, {dtype = "int32"}), window, block)
    T.eq(num.dtype, "int32"); T.eq(idx.dtype, "int32")
    local flat = idx:contiguous():view(-1):tolist()
    return num:tolist(), string.pack("<" .. string.rep("i4", #flat), table.unpack(flat))
  end
  -- 4 blocks: documents [1], [1..2], [2..4], [5]; window 256 tokens = 2 blocks of 128
  local num, packed = lists({1, 1, 2, 5}, {1, 2, 4, 5}, 256, 128)
  T.eq(#packed, 4 * 4 * 4)
  local idx = {}
  for q = 1, 4 do idx[q] = {string.unpack("<i4i4i4i4", packed, (q - 1) * 16 + 1)}; idx[q][5] = nil end
  T.eq(table.concat(num, ","), "1,2,2,1")
  T.eq(table.concat(idx[1], ","), "0,1,2,3")
  T.eq(table.concat(idx[2], ","), "0,1,2,3")
  T.eq(table.concat(idx[3], ","), "1,2,0,3")     -- block 0 is 2 blocks back: outside the window
  T.eq(table.concat(idx[4], ","), "3,0,1,2")     -- block 2's documents end before block 3's
  -- against the definition (a full scan of every row, stable descending sort of the 0/1 row)
  local function naive(lo, hi, window, block)
    local n, wb = #lo, (window + block - 1) // block
    local nums, out = {}, {}
    for q = 1, n do
      local on, off = {}, {}
      for k = 1, n do
        local keep = q >= k and lo[q] <= hi[k] and lo[k] <= hi[q] and q - k < wb
        if keep then on[#on + 1] = k - 1 else off[#off + 1] = k - 1 end
      end
      nums[q] = #on
      for _, k in ipairs(off) do on[#on + 1] = k end
      for _, k in ipairs(on) do out[#out + 1] = string.pack("<i4", k) end
    end
    return nums, table.concat(out)
  end
  local seed = 7
  local function rnd(m) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % m end
  for _, n in ipairs {1, 5, 17, 40} do
    for _, window in ipairs {1, 64, 128, 129, 700, 100000} do
      local lo, hi, d = {}, {}, 1
      for q = 1, n do lo[q] = d; d = d + rnd(3); hi[q] = d; d = d + (rnd(4) == 0 and 1 or 0) end
      local n1, p1 = lists(lo, hi, window, 128)
      local n2, p2 = naive(lo, hi, window, 128)
      T.eq(table.concat(n1, ","), table.concat(n2, ","), ("counts n %d window %d"):format(n, window))
      T.ok(p1 == p2, ("indices n %d window %d"):format(n, window))
    end
  end
  -- ceil: a 129-token window reaches 2 blocks; the window as a 0-d int32 tensor gives the same lists
  local n2 = lists({1, 1, 1}, {1, 1, 1}, 129, 128)
  T.eq(table.concat(n2, ","), "1,2,2")
  local n3, p3 = lists({1, 1, 2, 5}, {1, 2, 4, 5}, sr.tensor(256, {dtype = "int32"}), 128)
  T.eq(table.concat(n3, ","), "1,2,2,1"); T.ok(p3 == packed, "tensor window")
end)

T.case("record 13 window warmup: 64 * floor((it / N * 1728 + 64) / 64)", function()
  local r = load_recipe(13)
  local c = r.config.full
  T.eq(r.window_at(c, 0, 1750), 64)
  T.eq(r.window_at(c, 875, 1750), 896)           -- 0.5 * 1728 + 64 = 928 -> 14 * 64
  T.eq(r.window_at(c, 1750, 1750), 1792)
  T.eq(r.window_at(c, 1749, 1750), 1728)         -- 1791.01 -> 27 * 64
  T.eq(math.type(r.window_at(c, 3, 1750)), "integer")
  local prev = 0
  for it = 0, 1750 do
    local w = r.window_at(c, it, 1750)
    T.ok(w >= prev and w % 64 == 0, "monotone multiples of 64")
    prev = w
  end
  T.ok(r.config.micro.window_max <= r.config.micro.batch.T, "the micro window fits the micro sequence")
end)

T.case("record 16 block window: floor(((1 - f) 64 + f 1792 + 64) / 128), 1 -> 14", function()
  local r = load_recipe(16)
  local c = r.config.full
  T.eq(r.window_at(c, 0, 1480), 1)
  T.eq(r.window_at(c, 740, 1480), 7)             -- (32 + 896 + 64) / 128 = 7.75
  T.eq(r.window_at(c, 1480, 1480), 14)           -- 1856 / 128 = 14.5
  T.eq(r.window_at(c, 111, 1480), 2)             -- (59.2 + 134.4 + 64) / 128 = 2.01
  T.eq(r.window_at(c, 100, 1480), 1)             -- (59.68 + 121.08 + 64) / 128 = 1.91
  T.eq(math.type(r.window_at(c, 3, 1480)), "integer")
end)

T.case("record 16 full/partial blocks: the script's rule and the engine's block mask agree", function()
  local r = load_recipe(16)
  -- hand values: lo/hi per block for 4 blocks: [1,1], [1,1], [1,2], [3,3]
  local lo, hi = {1, 1, 1, 3}, {1, 1, 2, 3}
  T.eq(r.block_kind(2, 1, lo, hi, 4), "full")      -- below the diagonal, one document
  T.eq(r.block_kind(1, 1, lo, hi, 4), "partial")   -- the diagonal
  T.eq(r.block_kind(3, 2, lo, hi, 4), "partial")   -- block 3 spans two documents
  T.eq(r.block_kind(4, 3, lo, hi, 4), nil)         -- no common document (lo[4] = 3 > hi[3] = 2)
  T.eq(r.block_kind(4, 1, lo, hi, 2), nil)         -- 3 blocks back, window 2 blocks
  if not has_attention then return end
  -- the engine's lists for record 16's mask against the rule: EOTs at 1 and 300 (1-based), 4 blocks
  local ids = {}
  for i = 1, 512 do ids[i] = (i == 1 or i == 300) and EOT or 3 end
  local docs = r.document_ids(sr.tensor(ids, {dtype = "int32"}), EOT, 128)
  local d = docs:tolist()
  local blo, bhi = {}, {}
  for b = 1, 4 do blo[b], bhi[b] = d[(b - 1) * 128 + 1], d[b * 128] end
  for _, wb in ipairs {1, 2, 3, 4} do
    for _, arg_ in ipairs {wb, sr.tensor(wb, {dtype = "int32"})} do
      local m = r.make_mask({block = 128}, 512, docs, "cpu", arg_)
      local function listed(num, idx)
        local set, n_, ix = {}, num:tolist(), idx:contiguous():view(-1):tolist()
        for q = 1, 4 do for x = 1, n_[q] do set[q .. ":" .. (ix[(q - 1) * 4 + x] + 1)] = true end end
        return set
      end
      local part, full = listed(m.kv_num_blocks, m.kv_indices), listed(m.full_kv_num_blocks, m.full_kv_indices)
      for q = 1, 4 do
        for k = 1, 4 do
          local kind = r.block_kind(q, k, blo, bhi, wb)
          local got = full[q .. ":" .. k] and "full" or part[q .. ":" .. k] and "partial" or nil
          T.eq(got, kind, ("window %d blocks, q %d k %d"):format(wb, q, k))
        end
      end
    end
  end
  T.ok(#r.make_mask({block = 128}, 512, docs, "cpu", 4).full_kv_indices.shape == 2, "lists are [NB, NB]")
end)

T.case("rotary tables: records 12-13 fp32 angles, bf16 cache; 14-16 bf16 positions and inv_freq", function()
  local r12, r14 = load_recipe(12), load_recipe(14)
  local c12, s12 = r12.rotary_tables(600, 8, "cpu")
  local c14, s14 = r14.rotary_tables(600, 8, "cpu")
  T.eq(c12.dtype, "bfloat16")
  T.eq(c14.dtype, "bfloat16")
  T.eq(table.concat(c14.shape, ","), "1,600,1,4")
  local c, sn = F.cast(c14, "float32"):view(600, 4):tolist(), F.cast(s14, "float32"):view(600, 4):tolist()
  local c2 = F.cast(c12, "float32"):view(600, 4):tolist()
  -- inv_freq in bf16 (the buffer after model.bfloat16()), positions rounded to bf16 (nearest even)
  local function bf(x) return F.cast(F.cast(sr.tensor({x}), "bfloat16"), "float32"):item() end
  for _, ti in ipairs {{0, 1}, {1, 2}, {255, 2}, {299, 3}, {513, 4}} do
    local t, i = ti[1], ti[2]
    local a = bf(t) * bf((1 / 10000) ^ ((2 * (i - 1)) / 8))
    T.ok(math.abs(c[t + 1][i] - math.cos(a)) < 8e-3 and math.abs(sn[t + 1][i] - math.sin(a)) < 8e-3,
         ("cos/sin at t %d, i %d"):format(t, i))
  end
  -- exact to 256, then 2 apart (299, 301 -> 300, 257 -> 256: ties to even), 4 apart from 512
  local function same(t1, t2)
    for i = 1, 4 do if c[t1 + 1][i] ~= c[t2 + 1][i] or sn[t1 + 1][i] ~= sn[t2 + 1][i] then return false end end
    return true
  end
  T.ok(not same(255, 256), "positions below 256 are exact")
  T.ok(same(256, 257) and same(299, 300) and same(301, 300) and not same(300, 302) and same(513, 512) and
       same(514, 512) and same(515, 516) and not same(512, 516),
       "positions rounded to bf16 above 256")
  -- record 12 (fp32 positions) differs where the rounding moved the position, not below 256
  T.ok(c2[100][1] == c[100][1] and c2[300][1] ~= c[300][1], "record 12's table: fp32 positions (inv_freq 1: t 99, 299)")
end)

T.case("value embeddings: the chunk/table of every block (U-net order from record 15)", function()
  local r14, r15, r16 = load_recipe(14), load_recipe(15), load_recipe(16)
  local function order(r, L)
    local o = {}
    for i = 1, L do o[i] = r.ve_index(i, L) - 1 end
    return table.concat(o, ",")
  end
  T.eq(order(r14, 12), "0,1,2,3,4,5,6,7,8,9,10,11")
  T.eq(order(r15, 12), "0,1,2,3,4,5,5,4,3,2,1,0")
  T.eq(order(r16, 12), "0,1,2,3,4,5,5,4,3,2,1,0")
  T.eq(order(r15, 4), "0,1,1,0")
end)

T.case("record 15 Muon: EMA momentum, Nesterov lerp, update = lr * scale * NS(u)", function()
  local r = load_recipe(15)
  local p = sr.zeros(4, 4)
  local g = sr.tensor({{1, 0, 0, 0}, {0, 2, 0, 0}, {0, 0, 3, 0}, {0, 0, 0, 4}})
  local M = r.Muon({p}, 0.1, 0.5)
  p.grad = g
  M:step()
  local buf = M.bufs[p]
  T.ok(F.max(F.abs(buf - g * 0.5)):item() == 0, "buf = lerp(0, g, 1 - m) = 0.5 g")
  -- u = lerp(g, buf, m) = 0.5 g + 0.5 buf = 0.75 g (exact); p = -lr NS(u) (scale 1: square)
  local want = F.cast(r.newton_schulz5(g * 0.75, 5), "float32") * -0.1
  T.ok(F.max(F.abs(p - want)):item() < 1e-7, "p = -lr NS(0.75 g)")
  p.grad = g
  M:set_momentum(0.75)
  M:step()
  T.ok(F.max(F.abs(buf - g * 0.625)):item() == 0, "buf = 0.75 buf + 0.25 g with the new m")
end)

T.case("record 15 Muon: parameters grouped by size, in order; scale sqrt(max(1, r/c))", function()
  local r = load_recipe(15)
  local ps = {sr.zeros(4, 4), sr.zeros(8, 4), sr.zeros(4, 4), sr.zeros(4, 8), sr.zeros(8, 4)}
  local groups = r.muon_groups(ps)
  T.eq(#groups, 2)
  T.eq(groups[1].size, 16)
  T.eq(#groups[1].params, 2)
  T.ok(groups[1].params[1] == ps[1] and groups[1].params[2] == ps[3], "16-element group: params 1, 3")
  T.eq(groups[2].size, 32)
  T.ok(groups[2].params[1] == ps[2] and groups[2].params[2] == ps[4] and groups[2].params[3] == ps[5],
       "32-element group: params 2, 4, 5")
  -- the tall matrix gets scale sqrt(8 / 4), the wide one 1: |update| ratio
  local tall, wide = sr.zeros(8, 4), sr.zeros(4, 8)
  local g = sr.randn(8, 4)
  local M = r.Muon({tall, wide}, 0.1, 0.9)
  tall.grad, wide.grad = g, g:transpose(1, 2):contiguous()
  M:step()
  local ratio = F.norm(tall):item() / F.norm(wide):item()
  T.ok(math.abs(ratio - math.sqrt(2)) < 0.02, "tall / wide update norms = sqrt 2, got " .. ratio)
end)

T.case("parameter names follow the PyTorch state dicts", function()
  local want = {
    [12] = {"transformer.wte.weight", "transformer.h.0.attn.lamb", "transformer.h.0.attn.c_q.weight", "skip_weights", "lm_head.weight"},
    [14] = {"transformer.vte.weight", "transformer.h.1.attn.lamb"},
    [15] = {"transformer.vte.weight", "transformer.h.0.attn.lambdas", "transformer.h.3.mlp.c_fc.weight"},
    [16] = {"embed.weight", "blocks.0.attn.lambdas", "blocks.1.lambdas", "value_embeds.embed.0.weight",
            "value_embeds.embed.1.weight", "blocks.3.mlp.c_proj.weight", "skip_weights", "lm_head.weight"},
  }
  for n, names in pairs(want) do
    local _, ctx = setup(n, 1)
    local sd = ctx.model:state_dict()
    for _, name in ipairs(names) do T.ok(sd[name], ("record %d has %s"):format(n, name)) end
  end
  local _, ctx = setup(15, 1)
  T.eq(table.concat(ctx.model:state_dict()["transformer.vte.weight"].shape, ","), "64,128")  -- V x (L/2 C)
  T.eq(ctx.model:state_dict()["transformer.vte.weight"].dtype, "bfloat16")
end)

T.case("configs: the record's shapes and steps, the proxy ladder's target, seq batches", function()
  for n = 12, 16 do
    local r, meta = load_recipe(n), load_meta(n)
    local full, proxy = r.config.full, r.config.proxy
    T.eq(full.steps, meta.steps, "full steps of record " .. n)
    T.eq(full.batch.mode, "seq")
    T.eq(full.batch.T, meta.tokens_per_step)
    T.eq(full.batch.T % full.micro_batch, 0)
    T.eq(full.micro_batch, 65536)
    T.eq(full.val_batch.T, 65536)
    T.eq(full.val_tokens % full.val_batch.T, 0)
    T.eq(proxy.target_val_loss, 5.3)
    T.eq(proxy.val_tokens, 262144)
    T.eq(proxy.val_tokens % proxy.val_batch.T, 0)
    for _, s in ipairs {"micro", "proxy", "full"} do
      local c = r.config[s]
      T.eq((c.micro_batch or c.batch.T) % c.block, 0, s .. " T is a multiple of the block")
    end
    T.eq(full.model.n_layer, 12)
    T.eq(full.model.vocab_size, 50304)
  end
  T.eq(load_recipe(12).config.full.window, 1024)
  T.eq(load_recipe(13).config.full.muon_lr, 0.05)
  T.eq(load_recipe(13).config.full.betas[1], 0.8)
  T.eq(load_recipe(14).config.full.cooldown, 600)
end)

-- end to end under the harness: the seq loader, host validation and the causality check
R.harness_case(16, {steps = 3, val_tokens = 512, documents = true, max_val = false,
                   skip = not has_attention and "speedrun.attention not in this build"})

T.done()
