-- Flex attention on the CPU (issue 16): the block-mask builders against hand-built masks and
-- against the element mask itself, F.flex_attention against a dense masked attention built from
-- existing ops, the lists form (records 15, 16), and gradchecks on small shapes.
local sr = require "speedrun"
local T = require "speedrun.testing"
local A = require "speedrun.attention"
local F = sr.F

sr.manual_seed(16)

local function ids(t) return sr.tensor(t, {dtype = "int32"}) end
local function list(t) return t:contiguous():view(-1):tolist() end
-- row r (0-based) of an [NB, NB] index list, its first n entries
local function row(idx, nb, r, n)
  local all, out = list(idx), {}
  for x = 1, n do out[x] = all[r * nb + x] end
  return out
end
local function same(a, b, msg)
  T.eq(#a, #b, msg .. ": lengths")
  for i = 1, #a do T.eq(a[i], b[i], msg .. ": entry " .. i) end
end

-- sorted doc ids [T], about avg tokens per document (rng: Lua's, seeded)
local function random_docs(n, avg)
  local t, id = {}, 0
  for i = 1, n do
    if i > 1 and math.random() * avg < 1 then id = id + 1 end
    t[i] = id
  end
  return t
end

-- the element mask itself, dense [T][T] booleans (1-based tables), from the components
local function exact(n, o)
  local m = {}
  for i = 0, n - 1 do
    m[i + 1] = {}
    for j = 0, n - 1 do
      local ok = not (o.causal and j > i)
      if o.window and i - j >= o.window then ok = false end
      if o.window_blocks and (i // o.block) - (j // o.block) >= o.window_blocks then ok = false end
      if o.docs and o.docs[i + 1] ~= o.docs[j + 1] then ok = false end
      m[i + 1][j + 1] = ok
    end
  end
  return m
end

-- every block pair's class from the lists: "full", "partial" or nil
local function classes(mask)
  local nb, c = mask.nblocks, {}
  for qb = 0, nb - 1 do c[qb] = {} end
  local kn, ki = list(mask.kv_num_blocks), list(mask.kv_indices)
  local fn, fi = list(mask.full_kv_num_blocks), list(mask.full_kv_indices)
  for qb = 0, nb - 1 do
    for x = 1, kn[qb + 1] do c[qb][ki[qb * nb + x]] = "partial" end
    for x = 1, fn[qb + 1] do
      T.ok(c[qb][fi[qb * nb + x]] == nil, "a block in both lists")
      c[qb][fi[qb * nb + x]] = "full"
    end
  end
  return c
end

-- the lists against the element mask: a full block has every pair visible, an unlisted one none;
-- exact_partial: a partial block has some pair visible and some masked
local function check_lists(mask, ex, exact_partial, msg)
  local bs, nb, c = mask.block, mask.nblocks, classes(mask)
  for qb = 0, nb - 1 do
    for kb = 0, nb - 1 do
      local vis, all = 0, bs * bs
      for i = qb * bs, qb * bs + bs - 1 do
        for j = kb * bs, kb * bs + bs - 1 do
          if ex[i + 1][j + 1] then vis = vis + 1 end
        end
      end
      local where = ("%s: block (%d, %d) %s with %d of %d visible"):format(msg, qb, kb, tostring(c[qb][kb]), vis, all)
      if c[qb][kb] == "full" then T.ok(vis == all, where)
      elseif c[qb][kb] == nil then T.ok(vis == 0, where)
      elseif exact_partial then T.ok(vis > 0 and vis < all, where) end
    end
  end
  -- the transposed lists hold the same pairs
  local qn, qi = list(mask.q_num_blocks), list(mask.q_indices)
  local fqn, fqi = list(mask.full_q_num_blocks), list(mask.full_q_indices)
  for kb = 0, nb - 1 do
    local n = 0
    for qb = 0, nb - 1 do if c[qb][kb] == "partial" then n = n + 1 end end
    T.eq(qn[kb + 1], n, msg .. ": q_num_blocks")
    for x = 1, qn[kb + 1] do T.eq(c[qi[kb * nb + x]][kb], "partial", msg .. ": q_indices") end
    for x = 1, fqn[kb + 1] do T.eq(c[fqi[kb * nb + x]][kb], "full", msg .. ": full_q_indices") end
  end
  -- mask:dense() (listed blocks under the element mask) is the element mask itself
  local d = mask:dense():tolist()
  for i = 1, #ex do
    for j = 1, #ex do
      if (d[i][j] == 1) ~= ex[i][j] then error(("%s: dense (%d, %d) is %d"):format(msg, i, j, d[i][j])) end
    end
  end
end

T.case("hand-built masks", function()
  -- one document, causal, 4 blocks of 8: the diagonal partial, below it full
  local m = A.block_mask {T = 32, block = 8, causal = true, doc_ids = ids({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                                          0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})}
  same(list(m.kv_num_blocks), {1, 1, 1, 1}, "one doc: kv_num_blocks")
  same(list(m.full_kv_num_blocks), {0, 1, 2, 3}, "one doc: full_kv_num_blocks")
  for r = 0, 3 do
    same(row(m.kv_indices, 4, r, 1), {r}, "one doc: kv_indices row " .. r)
    local want = {}
    for x = 0, r - 1 do want[#want + 1] = x end
    same(row(m.full_kv_indices, 4, r, r), want, "one doc: full_kv_indices row " .. r)
  end
  local s = m:stats()
  T.ok(s.full == 6 and s.partial == 4 and s.empty == 6, "one doc stats")
  same(list(m.q_num_blocks), {1, 1, 1, 1}, "one doc: q_num_blocks")
  same(list(m.full_q_num_blocks), {3, 2, 1, 0}, "one doc: full_q_num_blocks")
  same(row(m.full_q_indices, 4, 0, 3), {1, 2, 3}, "one doc: full_q_indices row 0")

  -- a document per block: only the diagonal, partial (causal within it)
  local per = {}
  for t = 0, 31 do per[t + 1] = t // 8 end
  s = A.block_mask {T = 32, block = 8, doc_ids = ids(per)}:stats()
  T.ok(s.full == 0 and s.partial == 4 and s.empty == 12, "a doc per block")
  -- not causal, a document per block: the diagonal full
  s = A.block_mask {T = 32, block = 8, causal = false, doc_ids = ids(per)}:stats()
  T.ok(s.full == 4 and s.partial == 0 and s.empty == 12, "a doc per block, not causal")

  -- window of 3 tokens (smaller than a block): the diagonal and the block before, both partial
  m = A.block_mask {T = 32, block = 8, window = 3}
  s = m:stats()
  T.ok(s.full == 0 and s.partial == 7 and s.empty == 9, "window 3: " .. s.full .. " " .. s.partial)
  same(row(m.kv_indices, 4, 2, 2), {1, 2}, "window 3: kv_indices row 2")
  -- window of 9 tokens: blocks qb-1 (partial: q - kv from 1 to 15) and qb; qb-2 has q - kv >= 9
  s = A.block_mask {T = 32, block = 8, window = 9}:stats()
  T.ok(s.full == 0 and s.partial == 7, "window 9")
  -- window of 16 tokens: qb-1 full (q - kv <= 15), qb-2 partial (from 9)
  s = A.block_mask {T = 32, block = 8, window = 16}:stats()
  T.ok(s.full == 3 and s.partial == 6, "window 16: " .. s.full .. " " .. s.partial)

  -- window_blocks = 2 (record 16): qb-1 full, qb partial; a number or a device-side tensor
  s = A.block_mask {T = 32, block = 8, window_blocks = 2}:stats()
  T.ok(s.full == 3 and s.partial == 4 and s.empty == 9, "window_blocks 2")
  local wb = ids({2}):view()
  m = A.block_mask {T = 32, block = 8, window_blocks = wb}
  s = m:stats()
  T.ok(s.full == 3 and s.partial == 4, "window_blocks tensor 2")
  wb:fill_(3)  -- a new value: the next build reads it
  s = A.block_mask {T = 32, block = 8, window_blocks = wb}:stats()
  T.ok(s.full == 5 and s.partial == 4, "window_blocks tensor 3")
  T.eq(m.window_blocks, wb)
end)

T.case("builder against the element mask (random documents and windows)", function()
  math.randomseed(12)
  for trial = 1, 24 do
    local bs = ({4, 8, 16})[trial % 3 + 1]
    local nb = 3 + trial % 4
    local n = nb * bs
    local o = {block = bs, causal = trial % 5 ~= 0}
    if trial % 2 == 0 then o.docs = random_docs(n, bs * (0.3 + 3 * math.random())) end
    if trial % 3 ~= 1 then o.window = 1 + math.random(3 * bs) end
    if trial % 4 == 3 then o.window_blocks = 1 + math.random(nb) end
    local m = A.block_mask {T = n, block = bs, causal = o.causal, doc_ids = o.docs and ids(o.docs), window = o.window,
                            window_blocks = o.window_blocks}
    local msg = ("trial %d (T=%d block=%d causal=%s docs=%s window=%s window_blocks=%s)"):format(trial, n, bs,
      tostring(o.causal), tostring(o.docs ~= nil), tostring(o.window), tostring(o.window_blocks))
    -- partial blocks are exact except where doc ids and a window meet (block id ranges)
    check_lists(m, exact(n, o), not (o.docs and o.window), msg)
  end
end)

-- the dense masked attention from existing ops: softmax(where(mask, s q.k, -inf)) v
local function dense_attention(q, k, v, dense, scale)
  local s = F.mul(F.matmul(q, k:transpose(-2, -1)), scale)
  local p = F.softmax(F.where(dense, s, -math.huge), -1)
  return F.matmul(p, v)
end

T.case("forward against a dense masked attention", function()
  math.randomseed(3)
  for trial = 1, 8 do
    local B, H, bs, nb, D = 1 + trial % 2, 2, 8, 4, ({8, 16})[trial % 2 + 1]
    local n = nb * bs
    local docs = trial % 2 == 0 and random_docs(n, 10) or nil
    local window = trial % 3 == 0 and 5 + trial or nil
    local m = A.block_mask {T = n, block = bs, doc_ids = docs and ids(docs), window = window,
                            window_blocks = trial == 5 and 2 or nil}
    local q, k, v = sr.randn(B, H, n, D), sr.randn(B, H, n, D), sr.randn(B, H, n, D)
    local scale = trial % 4 == 1 and 0.12 or 1 / math.sqrt(D)
    local y = F.flex_attention(q, k, v, m, trial % 4 == 1 and {scale = 0.12} or nil)
    T.eq(table.concat(y.shape, ","), table.concat({B, H, n, D}, ","), "shape")
    local want = dense_attention(q, k, v, m:dense(), scale)
    T.ok(T.rel_err(y, want) < 1e-5, ("trial %d: rel err %g"):format(trial, T.rel_err(y, want)))
  end
  -- the dense causal mask matches scaled_dot_product_attention; float64 too
  local q, k, v = sr.randn(1, 3, 24, 8, {dtype = "float64"}), sr.randn(1, 3, 24, 8, {dtype = "float64"}), sr.randn(1, 3, 24, 8, {dtype = "float64"})
  local y = F.flex_attention(q, k, v, A.block_mask {T = 24, block = 8})
  T.ok(T.rel_err(y, F.scaled_dot_product_attention(q, k, v)) < 1e-12, "causal = sdpa")
end)

T.case("the lists form (records 15 and 16)", function()
  math.randomseed(5)
  local bs, nb = 8, 6
  local n = bs * nb
  local docs = random_docs(n, 12)
  local built = A.block_mask {T = n, block = bs, doc_ids = ids(docs), window_blocks = 3}
  -- record 16: both lists, the element mask causal and documents
  local m16 = A.block_mask_from_lists {T = n, block = bs, kv_num_blocks = built.kv_num_blocks,
                                       kv_indices = built.kv_indices, full_kv_num_blocks = built.full_kv_num_blocks,
                                       full_kv_indices = built.full_kv_indices, mask = {causal = true, doc_ids = ids(docs)}}
  local s1, s2 = built:stats(), m16:stats()
  T.ok(s1.full == s2.full and s1.partial == s2.partial, "same stats")
  same(list(m16.data), list(built.data), "record 16 lists: same packed mask")
  -- record 15: partial lists only (every listed block under the element mask), [1, 1, NB] shapes
  local m15 = A.block_mask_from_lists {T = n, block = bs, kv_num_blocks = built.kv_num_blocks:view(1, 1, nb),
                                       kv_indices = built.kv_indices:view(1, 1, nb, nb),
                                       mask = {causal = true, doc_ids = ids(docs), window = 20}}
  T.eq(m15:stats().full, 0, "no full blocks")
  local q, k, v = sr.randn(1, 2, n, 8), sr.randn(1, 2, n, 8), sr.randn(1, 2, n, 8)
  local want = dense_attention(q, k, v, m15:dense(), 1 / math.sqrt(8))
  T.ok(T.rel_err(F.flex_attention(q, k, v, m15), want) < 1e-5, "record 15 lists")
  -- a row with no listed block: zeros (FlexAttention's convention), not NaN
  local kn = ids({0, 1, 1, 1, 1, 1})
  local ki = sr.zeros(nb, nb, {dtype = "int32"})
  local m0 = A.block_mask_from_lists {T = n, block = bs, kv_num_blocks = kn, kv_indices = ki, mask = {causal = false}}
  T.eq(A.block_mask_from_lists {T = n, block = bs, kv_num_blocks = kn, kv_indices = ki}.causal, true, "causal by default")
  local y = F.flex_attention(q, k, v, m0)
  T.close(y:narrow(3, 1, bs), sr.zeros(1, 2, bs, 8), 0)
  -- the other rows see kv block 0 whole (no element mask given)
  T.close(y:narrow(3, bs + 1, bs), F.scaled_dot_product_attention(q:narrow(3, bs + 1, bs), k:narrow(3, 1, bs),
          v:narrow(3, 1, bs), {causal = false}), 1e-5)
end)

T.case("gradcheck", function()
  local gradcheck = sr.autograd.gradcheck
  local function rnd(...)
    return sr.randn({...}, {dtype = "float64", requires_grad = true})
  end
  local docs = ids({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2})
  local masks = {
    {"causal", A.block_mask {T = 16, block = 4}},
    {"docs + window", A.block_mask {T = 16, block = 4, doc_ids = docs, window = 6}},
    {"window_blocks, not causal", A.block_mask {T = 16, block = 4, causal = false, window_blocks = 2}},
    {"docs, window < block", A.block_mask {T = 16, block = 8, doc_ids = docs, window = 3}},
  }
  for _, mk in ipairs(masks) do
    local ok, msg = gradcheck(function(q, k, v) return F.flex_attention(q, k, v, mk[2], {scale = 0.7}) end,
                              {rnd(2, 2, 16, 4), rnd(2, 2, 16, 4), rnd(2, 2, 16, 4)})
    T.ok(ok, mk[1] .. ": " .. tostring(msg))
  end
  -- a transposed (non-contiguous) q, default scale
  local qt = sr.randn(1, 2, 4, 16, {dtype = "float64"}):transpose(3, 4)
  qt.requires_grad = true
  local ok, msg = gradcheck(function(q, k, v) return F.flex_attention(q, k, v, masks[2][2]) end,
                            {qt, rnd(1, 2, 16, 4), rnd(1, 2, 16, 4)})
  T.ok(ok, "transposed q: " .. tostring(msg))
end)

T.case("the window as a device tensor equals the number (records 13-15: a window that grows in a captured step)", function()
  math.randomseed(7)
  local bs, nb, D = 8, 6, 8
  local n = nb * bs
  local docs = ids(random_docs(n, 12))
  local w = sr.tensor(0, {dtype = "int32"})                -- 0-d, as the records keep it
  for _, window in ipairs {3, 8, 13, 40} do
    w:fill_(window)                                          -- a new value, no new tensor
    local by_n = A.block_mask {T = n, block = bs, doc_ids = docs, window = window}
    local by_t = A.block_mask {T = n, block = bs, doc_ids = docs, window = w}
    same(list(by_t.data), list(by_n.data), "window " .. window .. ": the packed mask")
    local q, k, v = sr.randn(2, 2, n, D), sr.randn(2, 2, n, D), sr.randn(2, 2, n, D)
    local function run(m)
      local qq, kk, vv = q:clone():requires_grad_(), k:clone():requires_grad_(), v:clone():requires_grad_()
      local y = F.flex_attention(qq, kk, vv, m, {scale = 0.3})
      F.sum(F.square(y)):backward()
      return {y, qq.grad, kk.grad, vv.grad}
    end
    local a, b = run(by_n), run(by_t)
    for i, what in ipairs {"out", "dq", "dk", "dv"} do
      T.eq(T.rel_err(b[i], a[i]), 0, ("window %d: %s"):format(window, what))
    end
    T.ok(T.rel_err(b[1], dense_attention(q, k, v, by_t:dense(), 0.3)) < 1e-5, "window " .. window .. ": dense")
  end
  -- the tensor is read when the kernels run: the mask of window 40, attention told window 3
  local wide = A.block_mask {T = n, block = bs, doc_ids = docs, window = 40}
  local q = sr.randn(1, 1, n, D)
  w:fill_(3)
  local narrow_n = F.flex_attention(q, q, q, {data = wide.data, causal = true, has_doc = true, window = 3})
  local narrow_t = F.flex_attention(q, q, q, {data = wide.data, causal = true, has_doc = true, window = w})
  T.eq(T.rel_err(narrow_t, narrow_n), 0, "the value at the call")
  T.raises(function() return A.block_mask {T = n, block = bs, window = sr.tensor({1, 2}, {dtype = "int32"})} end,
           "window has shape")
  T.raises(function() return A.block_mask {T = n, block = bs, window = sr.tensor(3)} end, "window must be int32")
  T.raises(function() return A.block_mask {T = n, block = bs, window = -1} end, "window must be an integer >= 0")
end)

T.case("errors", function()
  T.raises(function() return A.block_mask {T = 30, block = 8} end, "multiple of the block size")
  T.raises(function() return A.block_mask {T = 32, block = 8, doc_ids = ids({0, 1})} end, "doc_ids has shape")
  T.raises(function() return A.block_mask {T = 32, block = 8, window_blocks = 0} end, "window_blocks")
  local m = A.block_mask {T = 32, block = 8}
  local q = sr.randn(1, 1, 16, 4)
  T.raises(function() return F.flex_attention(q, q, q, m) end, "the mask covers 32 tokens")
  T.raises(function() return F.flex_attention(q, q, q, {}) end, "not a block mask")
  local bad = sr.zeros(4, 4, {dtype = "int32"}):fill_(7)
  T.raises(function() return A.block_mask_from_lists {T = 32, block = 8, kv_num_blocks = ids({1, 1, 1, 1}), kv_indices = bad} end,
           "out of")
end)

-- bench/flex_attention.lua's dry run on the CPU (SR_FLEX_DEVICE=cpu, a short sequence): every table
-- row, the op-by-op profile of the first mask (the backward op, and no gradient copies: the leaves
-- are [B, T, H, D], as a model's) and the dense lines
T.case("bench/flex_attention.lua dry run on the CPU", function()
  local ok, out = T.run("SR_FLEX_T=512 SR_FLEX_DEVICE=cpu " .. T.shell_quote(arg[-1]) .. " run ../bench/flex_attention.lua 1")
  T.ok(ok, out)
  local rows = 0
  for _ in out:gmatch("\n| [%w ]+[^|]*| [%d.]+ %% |") do rows = rows + 1 end
  T.eq(rows, 8, "eight mask rows:\n" .. out)
  T.ok(out:find("flex_attention_backward +bwd:flex_attention"), "the backward op profiled:\n" .. out)
  T.ok(not out:find("bwd:accumulate"), "no gradient copied into a leaf:\n" .. out)
  T.ok(out:find("dense causal B=1 T=1024 H=12 D=64 %(records 1%-4%): sdpa fwd"), out)
end)

T.done()
