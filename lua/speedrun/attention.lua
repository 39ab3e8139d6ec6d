-- speedrun.attention: block masks for F.flex_attention (FlexAttention's BlockMask).
--
--   local A = require "speedrun.attention"      -- or sr.attention
--   local mask = A.block_mask {T = 65536, block = 128, causal = true, doc_ids = ids, window = 1024,
--                              window_blocks = n, device = "cuda"}
--   local mask = A.block_mask_from_lists {T =, block =, kv_num_blocks =, kv_indices =,
--                                         full_kv_num_blocks =, full_kv_indices =,
--                                         mask = {causal =, doc_ids =, window =}}
--   local y = F.flex_attention(q, k, v, mask [, {scale = s}])
--   mask:stats() --> {full =, partial =, empty =}  (block pairs)
--
-- The element mask (applied on partial blocks) is the conjunction of causal (kv <= q), equal doc
-- ids (int32 [T]) and a window of `window` tokens (q - kv < window). window (in tokens) and
-- window_blocks are each a number or a one-element int32 tensor on the mask's device, read there
-- when the kernels run, so a tensor may change between steps with no new mask (records 13-15 grow
-- the window during training: a captured CUDA graph replays with the current value). window_blocks
-- keeps the kv blocks whose block index is less than window_blocks behind the query block
-- (record 16): a block-level limit only. Per query block the kv blocks are listed as full (no
-- element mask) or partial; the rest are never visited. The mask object holds the packed int32
-- tensor `data` (layout: host/core/flex.h) and views of its lists: kv_num_blocks [NB],
-- kv_indices [NB, NB], full_kv_num_blocks, full_kv_indices (FlexAttention's layout, B and H
-- dims dropped: one mask for every batch row and head), q_num_blocks, q_indices,
-- full_q_num_blocks, full_q_indices (their transposes, for the backward).
local sr = require "speedrun"
local F = sr.F

local A = {}
local Mask = {}
Mask.__index = Mask

local function wrap(data, o, elem)
  local T, block = o.T, o.block or 128
  local nb = T // block
  local flat = data:view(-1)
  local m = setmetatable({
    data = data, T = T, block = block, nblocks = nb, device = data.device,
    causal = elem.causal, window = elem.window, doc_ids = elem.doc_ids, has_doc = elem.doc_ids ~= nil,
    window_blocks = o.window_blocks,
  }, Mask)
  local names = {{"kv_num_blocks", "kv_indices"}, {"full_kv_num_blocks", "full_kv_indices"},
                 {"q_num_blocks", "q_indices"}, {"full_q_num_blocks", "full_q_indices"}}
  for l, pair in ipairs(names) do
    local at = (l - 1) * (nb + nb * nb)
    m[pair[1]] = flat:narrow(1, at + 1, nb)
    m[pair[2]] = flat:narrow(1, at + nb + 1, nb * nb):view(nb, nb)
  end
  return m
end

-- the mask from its components (PyTorch's create_block_mask for these masks); causal defaults
-- to true, block to 128
function A.block_mask(o)
  assert(type(o) == "table", "block_mask: expected an options table")
  local causal = o.causal
  if causal == nil then causal = true end
  local data = F.flex_block_mask {T = o.T, block = o.block, causal = causal, doc_ids = o.doc_ids,
                                  window = o.window, window_blocks = o.window_blocks, device = o.device}
  return wrap(data, o, {causal = causal, window = o.window, doc_ids = o.doc_ids})
end

-- the mask from FlexAttention's lists (BlockMask.from_kv_blocks; full lists optional): counts
-- [NB] and indices [NB, NB] (any shape with those element counts, e.g. [1, 1, NB, NB]); the
-- element mask on partial blocks from o.mask = {causal =, doc_ids =, window =} (causal defaults
-- to true, as in block_mask: causal = false must be said)
function A.block_mask_from_lists(o)
  assert(type(o) == "table", "block_mask_from_lists: expected an options table")
  local elem = o.mask or {}
  local data = F.flex_block_mask_lists {T = o.T, block = o.block, kv_num_blocks = o.kv_num_blocks,
                                        kv_indices = o.kv_indices, full_kv_num_blocks = o.full_kv_num_blocks,
                                        full_kv_indices = o.full_kv_indices, doc_ids = elem.doc_ids,
                                        device = o.device}
  local causal = elem.causal
  if causal == nil then causal = true end
  return wrap(data, o, {causal = causal, window = elem.window, doc_ids = elem.doc_ids})
end

-- block pairs: {full =, partial =, empty =} (reads the counts to the host)
function Mask:stats()
  local nb = self.nblocks
  local function total(t)
    local s = 0
    for _, x in ipairs(t:to("cpu"):tolist()) do s = s + x end
    return s
  end
  local full, partial = total(self.full_kv_num_blocks), total(self.kv_num_blocks)
  return {full = full, partial = partial, empty = nb * nb - full - partial}
end

-- the mask as a dense [T, T] float tensor on the CPU (1 visible, 0 masked), for tests and
-- small models: listed full blocks, and partial blocks under the element mask
function Mask:dense()
  local T, bs, nb = self.T, self.block, self.nblocks
  local out = {}
  for i = 1, T * T do out[i] = 0 end
  local doc = self.doc_ids and self.doc_ids:to("cpu"):tolist()
  local lists = {}
  for _, name in ipairs {"kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"} do
    lists[name] = self[name]:contiguous():to("cpu"):view(-1):tolist()
  end
  local window = self.window or 0
  if sr.is_tensor(window) then window = window:item() end   -- its value now
  for qb = 0, nb - 1 do
    for l = 1, 2 do
      local cnt = l == 1 and lists.kv_num_blocks or lists.full_kv_num_blocks
      local idx = l == 1 and lists.kv_indices or lists.full_kv_indices
      for x = 1, cnt[qb + 1] do
        local kb = idx[qb * nb + x]
        for i = qb * bs, qb * bs + bs - 1 do
          for j = kb * bs, kb * bs + bs - 1 do
            local ok = l == 2 or (not (self.causal and j > i) and not (window > 0 and i - j >= window)
                                  and not (doc and doc[i + 1] ~= doc[j + 1]))
            if ok then out[i * T + j + 1] = 1 end
          end
        end
      end
    end
  end
  return sr.tensor(out):view(T, T)
end

function Mask:__tostring()
  return ("BlockMask(T=%d, block=%d, causal=%s, window=%s, window_blocks=%s, doc_ids=%s, %s)"):format(
    self.T, self.block, tostring(self.causal), tostring(self.window), tostring(self.window_blocks),
    tostring(self.has_doc), self.device)
end

A.Mask = Mask
return A
