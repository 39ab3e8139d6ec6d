-- tasks/record_16/recipe.lua: NanoGPT speedrun record 16 (3.80 min, ~157.2 ms/step; llm-speedrunner
-- record_16): split value embeddings, a block-level sliding window, full and partial blocks.
-- Changes against record 15 (records.md #16):
--
--   * the value embeddings are n_layer/2 separate V x C tables (`value_embeds.embed.K`, 6 in the
--     record) instead of one chunked table, used in the order [0..5, 5..0] (the same U-net order
--     as record 15's chunks);
--   * the window exists only at block granularity: n = floor(((1 - f) 64 + f 1792 + 64) / 128)
--     blocks at iteration it = f N (1 -> 14 in the record), kept in a 0-d int32 device tensor so
--     the step's kernels do not change with it; validation uses the current step's value;
--   * the block mask separates full blocks (q > k, within the window, both blocks inside one
--     document: no token mask) from partial ones (the rest of the nonzero blocks); the token mask
--     is causal AND same document only (no token-level window);
--   * the state-dict names are flattened: embed, blocks.N, value_embeds.embed.K, lm_head;
--   * gradient accumulation is allowed again (DDP with gradient_as_bucket_view in the script).
-- Unchanged from record 15: 64K flat sequences, document ids from the EOTs, U-net skips, the
-- two-lambda value mix, embedding shortcut, softcap 30, bf16 model, bf16 rotary tables from bf16 positions, Adam
-- (embed + value embeddings 0.6, head 0.008, scalars 0.04, betas (0.8, 0.95)), size-grouped EMA
-- Muon (lr 0.05, momentum warmup over 300 steps), 1,480 steps, cooldown 600.
--
-- The block mask is speedrun.attention's block_mask with window_blocks (it builds the per-block
-- document ranges and the full/partial split, as the script's create_doc_swc_block_mask; the
-- script hard-codes 512 blocks = 65,536 / 128, here T / block). Document ids: F.cumsum of the EOT
-- flags. On one GPU the 8 ranks' windows are 8 consecutive slices.
--
-- Muon, rotary, QK-norm, the shortcuts, the U-net, the value embeddings and the document ids are
-- written here from primitives, as in the PyTorch script. Parameter names follow the PyTorch state
-- dict. Contract: tasks/default/recipe.lua; the attention op: speedrun.attention.
local sr = speedrun or require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim

local recipe = {name = "record_16"}

recipe.config = {
  -- CPU, seconds: for tests (schedule lengths scaled down with the run); 2 blocks of 128
  micro = {
    model = {n_layer = 4, n_head = 2, n_embd = 64, vocab_size = 50304},
    batch = {mode = "seq", T = 256}, block = 128, eot = 50256,
    window_min = 64, window_max = 256,        -- blocks 1 -> 2 of 128 (the record: 64 -> 1792 tokens, 1 -> 14 blocks)
    steps = 20, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.05, scalar_lr = 0.04, betas = {0.8, 0.95},
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 3, warmup = 0, cooldown = 7,
    target_val_loss = 10.6, val_tokens = 4096, val_batch = {B = 1, T = 256},
    dtype = "bfloat16",
  },
  -- one GPU, minutes, default corpus: one flat 8,192-token sequence per step (record 11's proxy
  -- tokens per step), the record's windows in tokens (they are about documents, not T); steps and
  -- phases at the record's share of record 11's proxy, to be tuned (speedrun calibrate --tune-steps)
  proxy = {
    model = {n_layer = 6, n_head = 3, n_embd = 384, vocab_size = 50304},
    batch = {mode = "seq", T = 8192}, block = 128, eot = 50256,
    window_min = 64, window_max = 1792,
    steps = 76, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.05, scalar_lr = 0.04, betas = {0.8, 0.95},
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 15, warmup = 0, cooldown = 31,
    target_val_loss = 5.3, val_tokens = 262144, val_batch = {B = 1, T = 8192}, val_every = 125,
    dtype = "bfloat16",
  },
  -- the record: 8 x 65,536 tokens per step; on one GPU 8 slices of 65,536 accumulated
  full = {
    model = {n_layer = 12, n_head = 6, n_embd = 768, vocab_size = 50304},
    batch = {mode = "seq", T = 524288}, micro_batch = 65536, block = 128, eot = 50256,
    window_min = 64, window_max = 1792,
    steps = 1480, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.05, scalar_lr = 0.04, betas = {0.8, 0.95},
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 300, warmup = 0, cooldown = 600,
    target_val_loss = 3.28, val_tokens = 10485760, val_batch = {B = 1, T = 65536}, val_every = 125,
    dtype = "bfloat16",
  },
}
-- the config keys counted in steps: `--steps N --scale-schedule` and the step tuner scale them
recipe.schedule_keys = {"warmup", "cooldown", "momentum_warmup"}
-- the attention op (loaded at first use, so the file loads where it is absent)
local function attention() return require "speedrun.attention" end

-- a Linear weight [out, in] with PyTorch's default init U(+-1/sqrt(in))
local function linear_weight(n_in, n_out, o)
  local b = 1 / math.sqrt(n_in)
  return sr.empty(n_out, n_in, o):uniform_(-b, b)
end

-- CastedLinear: y = x W^T with the fp32 master weight cast to x's dtype at use (bf16); the cast's
-- backward returns the weight's gradient in fp32
local function linear(x, w)
  return F.linear(x, w.dtype == x.dtype and w or F.cast(w, x.dtype))
end

-- F.rms_norm(x, (C,)) with eps=None: PyTorch uses the epsilon of the fp32 opmath type
local EPS = 1.1920928955078125e-07
local function rmsnorm(x) return F.rms_norm(x, nil, EPS) end

-- fp32 rounding of a Lua number (the script computes inv_freq in fp32)
local function f32(x) return (string.unpack("f", string.pack("f", x))) end

-- rotary tables: cos, sin [1, T, 1, hd/2] in bf16, as the script's compiled forward makes them. Its
-- inv_freq = (1/base)^(2i/hd) is a registered buffer, so the model's .bfloat16() makes it bf16, and
-- torch.outer(arange(T), inv_freq) promotes the int64 positions to bf16 too: exact to 256, then
-- rounded (2 apart to 512, ..., 256 apart from 32,768). The compiled kernel multiplies and takes
-- cos / sin in fp32 and stores bf16 (eager PyTorch would round the product to bf16 as well)
local function rotary_tables(T, hd, device, base)
  base = base or 10000
  local inv = {}
  for i = 0, hd // 2 - 1 do inv[i + 1] = f32(f32(1 / base) ^ f32((2 * i) / hd)) end
  local h = hd // 2
  local o = {dtype = "float32", device = device}
  local function bf16_valued(x) return F.cast(F.cast(x, "bfloat16"), "float32") end
  local angles = F.mul(bf16_valued(sr.arange(T, o)):view(T, 1), bf16_valued(sr.tensor(inv, o)):view(1, h))
  return F.cast(F.cos(angles), "bfloat16"):view(1, T, 1, h), F.cast(F.sin(angles), "bfloat16"):view(1, T, 1, h)
end

-- x [B, T, H, hd]: half-split rotation of the pairs (x1, x2) = (x[..., :hd/2], x[..., hd/2:])
local function apply_rotary(x, cos, sin)
  local T = x.shape[2]
  cos, sin = cos:narrow(2, 1, T), sin:narrow(2, 1, T)
  -- y1 = x1 * cos + x2 * sin, y2 = x2 * cos - x1 * sin, cat(y1, y2): one fused kernel (F.rotary);
  -- bf16 x with bf16 tables computes in fp32 and rounds once (the compiled kernel)
  return F.cast(F.rotary(x, cos, sin), x.dtype)
end

recipe.rotary_tables, recipe.apply_rotary = rotary_tables, apply_rotary   -- exposed for tests

-- Muon ----------------------------------------------------------------------------------------
-- Newton-Schulz iteration for the orthogonal factor of G (the record's zeroth_power_via_newtonschulz5):
-- the input cast to bf16 and normalised by its own (bf16) norm, transposed when tall; bf16 out.
-- Each iteration: A = X X^T, B = b A + c A^2, X = a X + B X.
local NS_A, NS_B, NS_C = 3.4445, -4.7750, 2.0315
local function newton_schulz5(G, steps, eps)
  steps, eps = steps or 5, eps or 1e-7
  local X = F.cast(G, "bfloat16")
  X = X / F.cast(F.norm(X) + eps, "bfloat16")
  local tall = G.shape[1] > G.shape[2]
  if tall then X = X:transpose(1, 2) end
  for _ = 1, steps do
    local A = F.matmul(X, X:transpose(1, 2))
    local B = NS_B * A + NS_C * F.matmul(A, A)
    X = NS_A * X + F.matmul(B, X)
  end
  if tall then X = X:transpose(1, 2) end
  return X
end
recipe.newton_schulz5 = newton_schulz5     -- exposed for tests

-- the collective of the Muon (as record 15): every rank's bf16 update gathered into `bufs` (one per
-- rank). One process gathers its own; a multi-process run needs the engine's collective
-- (speedrun.dist.all_gather, not there yet). The script overlaps it (async) with the next NS.
local function all_gather(bufs, u, world_size)
  if world_size == 1 then bufs[1] = u; return bufs end
  local dist = sr.dist
  assert(dist and dist.all_gather, "Muon: world_size > 1 needs speedrun.dist.all_gather")
  dist.all_gather(bufs, u)
  return bufs
end

-- the parameters grouped by size (numel), each group in the parameters' order; groups in order
-- of first appearance (the script iterates a Python set of sizes; the groups are independent)
local function muon_groups(params)
  local groups, by_size = {}, {}
  for _, p in ipairs(params) do
    local n = p:numel()
    if not by_size[n] then by_size[n] = {size = n, params = {}}; groups[#groups + 1] = by_size[n] end
    table.insert(by_size[n].params, p)
  end
  return groups
end
recipe.muon_groups = muon_groups           -- exposed for tests

-- torch's lerp, as the script's buf.lerp_(g, 1 - m) and g.lerp_(buf, m): a + w (b - a) for a
-- weight below 0.5, else b - (b - a) (1 - w); here with w or 1 - w a device tensor (the
-- momentum changes during its warmup without changing the step's kernels)
local function lerp_small(a, b, w) return a + (b - a) * w end            -- w < 0.5
local function lerp_large(a, b, one_minus_w) return b - (b - a) * one_minus_w end   -- w >= 0.5

-- Muon (as record 15): EMA momentum buf <- lerp(buf, g, 1 - m), Nesterov u = lerp(g, buf, m);
-- params grouped by size; within a group rank r orthogonalises params[base + r] for base = 1,
-- 1 + world, ...; the bf16 updates are all-gathered and every rank applies them with the shape
-- scale inside the step size: p <- p - lr sqrt(max(1, rows/cols)) u (fp32 arithmetic on p).
local function Muon(params, lr, momentum, rank, world_size)
  local dev = params[1].device
  local o = {dtype = "float32", device = dev}
  local self = {groups = muon_groups(params), initial_lr = lr, bufs = {},
                rank = rank or 0, world_size = world_size or 1,
                lr = sr.tensor({lr}, o), momentum = sr.tensor({momentum}, o),
                one_minus = sr.tensor({1 - momentum}, o)}
  for _, g in ipairs(self.groups) do
    assert(#g.params % self.world_size == 0, "Muon: a size group's count must be a multiple of the world size")
  end
  function self:set_lr_multiplier(m) self.lr:fill_(self.initial_lr * m) end
  function self:set_momentum(m) self.momentum:fill_(m); self.one_minus:fill_(1 - m) end
  function self:update(p)
    local g = p.grad
    assert(g, "Muon: every matrix needs a gradient")
    local buf = self.bufs[p]
    if not buf then buf = sr.zeros(g.shape, {dtype = g.dtype, device = g.device}); self.bufs[p] = buf end
    buf:copy_(lerp_small(buf, g, self.one_minus))                 -- buf.lerp_(g, 1 - m)
    local u = lerp_large(g, buf, self.one_minus)                  -- g.lerp_(buf, m)
    return newton_schulz5(u, 5):reshape(p:numel())                -- bf16, flat
  end
  function self:step()
    sr.no_grad(function()
      local W = self.world_size
      for _, grp in ipairs(self.groups) do
        local ps = grp.params
        for base = 1, #ps, W do
          local gathered = all_gather({}, self:update(ps[base + self.rank]), W)
          for r = 1, W do
            local p = ps[base + r - 1]
            local scale = math.sqrt(math.max(1, p.shape[1] / p.shape[2]))
            p:add_(F.cast(gathered[r]:view(table.unpack(p.shape)), p.dtype) * (self.lr * -scale))
          end
        end
      end
    end)
  end
  function self:zero_grad()
    for _, g in ipairs(self.groups) do for _, p in ipairs(g.params) do p.grad = nil end end
  end
  return self
end
recipe.Muon = Muon         -- exposed for tests


-- the momentum warmup: 0.85 -> 0.95 over the first `momentum_warmup` steps (it = step - 1)
local function muon_momentum(c, it)
  local frac = c.momentum_warmup > 0 and math.min(it / c.momentum_warmup, 1) or 1
  return (1 - frac) * c.momentum_start + frac * c.momentum
end
recipe.muon_momentum = muon_momentum       -- exposed for tests

-- modules -------------------------------------------------------------------------------------
local Container = nn.class("Container")      -- named children only (nn.ModuleDict / ModuleList)
function Container:init(children)
  for _, kv in ipairs(children) do self:child(kv[1], kv[2]) end
end

local Attention = nn.class("CausalSelfAttention")
function Attention:init(cfg, o)
  local C = cfg.n_embd
  self.n_head = cfg.n_head
  self:param("lambdas", sr.tensor({0.5, 0.5}, {device = o.device, dtype = cfg.dtype}))   -- value-mix weights
  self:child("c_q", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_k", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_v", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_proj", Container {}):param("weight", sr.zeros(C, C, o))       -- zero init
end

-- the value-embedding mix: v <- lambdas[1] v + lambdas[2] ve (all bf16: a bf16 mix)
local function value_mix(v, ve, lambdas)
  local y = lambdas:narrow(1, 1, 1) * v + lambdas:narrow(1, 2, 1) * ve
  return y.dtype == v.dtype and y or F.cast(y, v.dtype)
end
recipe.value_mix = value_mix               -- exposed for tests

-- x [1, T, C] (normed), ve [1, T, C] (this block's value embedding), mask -> y [1, T, C]
function Attention:forward(x, ve, rot, mask)
  local B, T, C = x.shape[1], x.shape[2], x.shape[3]
  local H = self.n_head
  local hd = C // H
  local q = linear(x, self.c_q.weight):view(B, T, H, hd)
  local k = linear(x, self.c_k.weight):view(B, T, H, hd)
  local v = linear(x, self.c_v.weight):view(B, T, H, hd)
  v = value_mix(v, ve:reshape(B, T, H, hd), self.lambdas)        -- vi.view_as(v)
  q, k = rmsnorm(q), rmsnorm(k)                                              -- QK-norm
  q, k = apply_rotary(q, rot[1], rot[2]), apply_rotary(k, rot[1], rot[2])    -- after the norm
  local y = F.flex_attention(q:transpose(2, 3), k:transpose(2, 3), v:transpose(2, 3), mask)   -- [B, H, T, hd]
  y = y:transpose(2, 3):reshape(B, T, C)
  return linear(y, self.c_proj.weight)
end

local MLP = nn.class("MLP")
function MLP:init(cfg, o)
  local C = cfg.n_embd
  self:child("c_fc", Container {}):param("weight", linear_weight(C, 4 * C, o))
  self:child("c_proj", Container {}):param("weight", sr.zeros(C, 4 * C, o))   -- zero init
end
function MLP:forward(x)
  return linear(F.relu2(linear(x, self.c_fc.weight)), self.c_proj.weight)   -- relu(x)^2
end

-- the embedding shortcut: lambdas[1] * x + lambdas[2] * x0
local function shortcut(x, x0, lambdas)
  return lambdas:narrow(1, 1, 1) * x + lambdas:narrow(1, 2, 1) * x0
end
recipe.shortcut = shortcut                 -- exposed for tests

local Block = nn.class("Block")
function Block:init(cfg, o)
  self:child("attn", Attention(cfg, o))
  self:child("mlp", MLP(cfg, o))
  self:param("lambdas", sr.tensor({1, 0}, {device = o.device, dtype = cfg.dtype}))
end
function Block:forward(x, ve, x0, rot, mask)
  x = shortcut(x, x0, self.lambdas)
  x = x + self.attn(rmsnorm(x), ve, rot, mask)
  x = x + self.mlp(rmsnorm(x))
  return x
end

-- the logit softcap: 30 tanh(z / 30), in the logits' dtype (bf16)
local SOFTCAP = 30
-- in place over the head's fresh output (z / cap and tanh share its buffer; the compiled script fuses
-- the chain): the logits passed in are consumed
local function softcap(logits) return logits:div_(SOFTCAP):tanh_() * SOFTCAP end
recipe.softcap = softcap                   -- exposed for tests

-- a U-net skip: x + w * skip (w a one-element weight)
local function unet_skip(x, skip, w) return x + w * skip end
recipe.unet_skip = unet_skip               -- exposed for tests

-- document ids -------------------------------------------------------------------------------
-- the script's docs = (idx == 50256).cumsum(0): the running count of end-of-text tokens
local function document_ids(idx, eot)
  return F.cumsum(F.cast(F.eq(idx, eot), "int32"), 1)
end
recipe.document_ids = document_ids         -- exposed for tests

-- the block sliding window: floor(((1 - f) min + f max + min) / block) blocks at iteration it
-- (0-based) of N, f = it / N; 1 -> 14 blocks of 128 in the record (64 -> 1792 tokens)
local function window_at(c, it, N)
  local f = it / N
  return math.floor(((1 - f) * c.window_min + f * c.window_max + c.window_min) / c.block)
end
recipe.window_at = window_at               -- exposed for tests

-- the record's mask: kv blocks within `window_blocks` blocks (q - k < n), causal and document
-- overlap at block level; blocks wholly inside one document and strictly below the diagonal are
-- full (no token mask), the others partial with the token mask causal AND same document.
-- window_blocks: a number or a 0-d int32 device tensor
local function make_mask(c, T, docs, device, window_blocks)
  return attention().block_mask {T = T, block = c.block, causal = true, doc_ids = docs,
                                 window_blocks = window_blocks, device = device}
end
recipe.make_mask = make_mask               -- exposed for tests

-- the script's block-level classification of kv block k for query block q (1-based block ids;
-- lo, hi the blocks' first and last document ids): "full", "partial" or nil (skipped). For
-- tests: the attention op builds the same split from the document ids.
local function block_kind(q, k, lo, hi, n)
  if not (q >= k and q - k < n and lo[q] <= hi[k] and lo[k] <= hi[q]) then return nil end
  if q > k and lo[q] == hi[k] and lo[k] == hi[q] then return "full" end
  return "partial"
end
recipe.block_kind = block_kind             -- exposed for tests

-- the value-embedding table of block i (1-based): encoder block i takes table i, decoder block
-- enc + j takes table enc + 1 - j (0-based: 0..5, 5..0 for 12 layers: ve + reversed(ve))
local function ve_index(i, n_layer)
  local enc = n_layer // 2
  if i <= enc then return i end
  return 2 * enc + 1 - i
end
recipe.ve_index = ve_index                 -- exposed for tests

local GPT = nn.class("GPT")
function GPT:init(cfg, o)
  self.cfg = cfg
  local h = {}
  for i = 1, cfg.n_layer do h[i] = {tostring(i - 1), Block(cfg, o)} end
  self:child("embed", Container {}):param("weight",
    F.cast(sr.empty(cfg.vocab_size, cfg.n_embd, o):normal_(0, 1), cfg.dtype))   -- N(0, 1), bf16
  self:child("blocks", Container(h))
  -- the value embeddings: n_layer/2 separate V x C tables (6 in the record), N(0, 1), bf16
  local tables = {}
  for k = 1, cfg.n_layer // 2 do
    local e = Container {}
    e:param("weight", F.cast(sr.empty(cfg.vocab_size, cfg.n_embd, o):normal_(0, 1), cfg.dtype))
    tables[k] = {tostring(k - 1), e}
  end
  self:child("value_embeds", Container {{"embed", Container(tables)}})
  self.ve_tables = {}
  for k = 1, #tables do self.ve_tables[k] = tables[k][2].weight end
  self:child("lm_head", Container {}):param("weight", sr.zeros(cfg.vocab_size, cfg.n_embd, o))  -- untied, zero init
  self.layers = {}
  for i = 1, cfg.n_layer do self.layers[i] = h[i][2] end
  self.rot = {rotary_tables(cfg.block_size, cfg.n_embd // cfg.n_head, o.device)}
  self.encoder_layers = cfg.n_layer // 2
  self.decoder_layers = cfg.n_layer - self.encoder_layers
  self:param("skip_weights", sr.ones(self.decoder_layers, {device = o.device, dtype = cfg.dtype}))
end

-- idx [T] int32 (one flat sequence), the window in blocks (number or 0-d int32 tensor) ->
-- logits [1, T, V] (fp32); with targets [T] the mean loss
function GPT:forward(idx, targets, c, window)
  local T = idx:numel()
  local docs = document_ids(idx, c.eot)
  local mask = make_mask(c, T, docs, idx.device, window)
  local x = F.embedding(idx:reshape(1, T), self.embed.weight)      -- inputs[None]
  x = rmsnorm(x)
  local x0 = x
  local ve = {}                                                      -- n_layer/2 x [1, T, C]
  for k, w in ipairs(self.ve_tables) do ve[k] = F.embedding(idx:reshape(1, T), w) end
  local skips = {}
  for i = 1, self.encoder_layers do
    x = self.layers[i](x, ve[ve_index(i, self.cfg.n_layer)], x0, self.rot, mask)
    skips[#skips + 1] = x
  end
  for i = 1, self.decoder_layers do
    local l = self.encoder_layers + i
    x = unet_skip(x, table.remove(skips), self.skip_weights:narrow(1, i, 1))
    x = self.layers[l](x, ve[ve_index(l, self.cfg.n_layer)], x0, self.rot, mask)
  end
  x = rmsnorm(x)
  local logits = softcap(linear(x, self.lm_head.weight))            -- [1, T, V], bf16
  if targets then return nil, F.cross_entropy(logits, targets:reshape(1, T), {inplace = true}) end
  return F.cast(logits, "float32")
end

-- the recipe ----------------------------------------------------------------------------------
function recipe.setup(ctx)
  local c = ctx.config
  local m = c.model
  local T = math.max(c.micro_batch or c.batch.T, (c.val_batch or {}).T or 0)
  ctx.model = GPT({n_layer = m.n_layer, n_head = m.n_head, n_embd = m.n_embd, vocab_size = m.vocab_size,
                   block_size = T, dtype = c.dtype}, {device = ctx.device, dtype = "float32"})
  ctx.params = ctx.model:parameters()
  local model = ctx.model
  local matrix, scalar = {}, {}
  for _, p in ipairs(model.blocks:parameters()) do
    if p:dim() == 2 then matrix[#matrix + 1] = p else scalar[#scalar + 1] = p end
  end
  scalar[#scalar + 1] = ctx.model.skip_weights
  ctx.scalar_params = scalar
  -- Adam without decay: the bf16 embeddings (embed and the value-embedding tables, one group)
  -- and scalars with bf16 states (state_dtype "param"), the fp32 head with fp32 states; Muon on
  -- the block matrices (fp32 masters)
  local betas = c.betas or {0.9, 0.95}
  local embed = {model.embed.weight}
  for _, w in ipairs(model.ve_tables) do embed[#embed + 1] = w end
  ctx.window_blocks = sr.tensor(window_at(c, 0, ctx.steps), {dtype = "int32", device = ctx.device})   -- 0-d
  ctx.adam_bf16 = optim.AdamW({{params = embed, lr = c.embed_lr}, {params = scalar, lr = c.scalar_lr}},
                              {betas = betas, eps = 1e-8, weight_decay = 0, state_dtype = "param"})
  ctx.adam = optim.AdamW({{params = {ctx.model.lm_head.weight}, lr = c.head_lr}},
                         {betas = betas, eps = 1e-8, weight_decay = 0})
  ctx.muon = Muon(matrix, c.muon_lr, c.momentum, ctx.rank or 0, ctx.world_size or 1)
  ctx.optimizers = {ctx.adam_bf16, ctx.adam, ctx.muon}
  local N, w, d = ctx.steps, c.warmup, c.cooldown
  ctx.lr_mult = function(it)
    if it < w then return (it + 1) / w end
    if it < N - d then return 1.0 end
    return (N - it) / d
  end
end

function recipe.schedule(ctx, step)
  local mult = ctx.lr_mult(step - 1)
  for _, opt in ipairs(ctx.optimizers) do opt:set_lr_multiplier(mult) end
  ctx.muon:set_momentum(muon_momentum(ctx.config, step - 1))
  local n = window_at(ctx.config, step - 1, ctx.steps)
  if n ~= ctx.window then ctx.window_blocks:fill_(n); ctx.window = n end   -- the device copy
  ctx.done = step - 1                        -- steps finished before this one
end

-- x, y [T]: one flat window; at full scale on one GPU, T / micro_batch slices (the ranks' windows)
-- each with its own document ids and mask, losses divided by their number
function recipe.train_step(ctx, step, batch)
  local c = ctx.config
  local x, y = batch.x:reshape(batch.x:numel()), batch.y:reshape(batch.y:numel())
  local mb = c.micro_batch or x:numel()
  local n = x:numel() // mb
  local total
  for i = 1, n do
    local xi = n == 1 and x or x:narrow(1, (i - 1) * mb + 1, mb)
    local yi = n == 1 and y or y:narrow(1, (i - 1) * mb + 1, mb)
    local _, loss = ctx.model(xi, yi, c, ctx.window_blocks)
    if n > 1 then loss = loss / n end
    loss:backward()
    total = total and total + loss:detach() or loss:detach()
  end
  for _, opt in ipairs(ctx.optimizers) do
    opt:step()
    opt:zero_grad()
  end
  return total
end

-- validation: each row of inputs [B, T] is one flat sequence (the script's val loader, B = 1),
-- with the window of the loop's current step: after k finished steps, window_at(k) (k = N at the end)
function recipe.eval(ctx, inputs)
  local c = ctx.config
  local done = ctx.done and ctx.done + 1 or 0
  local window = window_at(c, done, ctx.steps)
  local B = inputs.shape[1]
  if B == 1 then return ctx.model(inputs:reshape(inputs:numel()), nil, c, window) end
  local rows = {}
  for b = 1, B do rows[b] = ctx.model(inputs:select(1, b):contiguous(), nil, c, window) end
  return F.cat(rows, 1)
end

return recipe
