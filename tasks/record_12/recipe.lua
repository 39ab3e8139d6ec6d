-- tasks/record_12/recipe.lua: NanoGPT speedrun record 12 (5.03 min, 161.8 ms/step; llm-speedrunner
-- record_12): FlexAttention over 64K-token flat sequences with document masks. Changes against
-- record 11 (records.md #12):
--
--   * the batch is one flat sequence per GPU (B = 1, T = 65,536 tokens; the loader's "seq" mode:
--     a window of T + 1 tokens, x = the first T, y = the last T); 524,288 tokens per step are
--     unchanged (8 GPUs; on one GPU 8 slices of 65,536 accumulated);
--   * document ids: docs = cumsum(x == 50256) (every EOT starts a new document);
--   * attention is F.flex_attention over a block mask (speedrun.attention, block 128) for
--     causal AND same document AND q - k < 1024; the mask is built in every forward from the
--     batch's ids, as the script's create_block_mask;
--   * the model reads x [T] and adds the batch dimension itself (idx[None]);
--   * 1,875 steps, warmdown 562.
-- Unchanged from record 11: U-net skips, value residual, embedding shortcut, softcap 30, untied
-- zero-init head, bf16 model with CastedLinear fp32 masters, Adam betas (0.9, 0.95) (lrs: embed
-- 0.6, head 0.008, scalars 0.04), Muon lr 0.04 with momentum warmup 0.85 -> 0.95 over 500 steps.
--
-- Document ids as the script computes them, F.cumsum of the EOT flags (int32). Documented
-- deviation: on one GPU the 8 ranks' windows are
-- the 8 consecutive 65,536-token slices of one 524,289-token window (the same tokens, x and y).
--
-- Muon, rotary, QK-norm, the shortcuts, the U-net and the document ids are written here from
-- primitives, as in the PyTorch script. Parameter names follow the PyTorch state dict
-- (tasks/fidelity/). Contract: tasks/default/recipe.lua; the attention op: speedrun.attention.
local sr = speedrun or require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim

local recipe = {name = "record_12"}

recipe.config = {
  -- CPU, seconds: for tests (schedule lengths scaled down with the run); 2 blocks of 128
  micro = {
    model = {n_layer = 2, n_head = 2, n_embd = 64, vocab_size = 50304},
    batch = {mode = "seq", T = 256}, block = 128, window = 64, eot = 50256,
    steps = 20, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.04, scalar_lr = 0.04,
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 3, warmup = 0, warmdown = 6,
    target_val_loss = 10.6, val_tokens = 4096, val_batch = {B = 1, T = 256},
    dtype = "bfloat16",
  },
  -- one GPU, minutes, default corpus: one flat 8,192-token sequence per step (record 11's proxy
  -- tokens per step), the record's window in tokens (it is about documents, not T); steps and
  -- phases at the record's share of record 11's proxy, to be tuned (speedrun calibrate --tune-steps)
  proxy = {
    model = {n_layer = 6, n_head = 3, n_embd = 384, vocab_size = 50304},
    batch = {mode = "seq", T = 8192}, block = 128, window = 1024, eot = 50256,
    steps = 78, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.04, scalar_lr = 0.04,
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 21, warmup = 0, warmdown = 23,
    target_val_loss = 5.3, val_tokens = 262144, val_batch = {B = 1, T = 8192}, val_every = 125,
    dtype = "bfloat16",
  },
  -- the record: 8 x 65,536 tokens per step; on one GPU 8 slices of 65,536 accumulated
  full = {
    model = {n_layer = 12, n_head = 6, n_embd = 768, vocab_size = 50304},
    batch = {mode = "seq", T = 524288}, micro_batch = 65536, block = 128, window = 1024, eot = 50256,
    steps = 1875, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.04, scalar_lr = 0.04,
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 500, warmup = 0, warmdown = 562,
    target_val_loss = 3.28, val_tokens = 10485760, val_batch = {B = 1, T = 65536}, val_every = 125,
    dtype = "bfloat16",
  },
}
-- the config keys counted in steps: `--steps N --scale-schedule` and the step tuner scale them
recipe.schedule_keys = {"warmup", "warmdown", "momentum_warmup"}
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

-- fp32 rounding of a Lua number (the script computes the rotary angles in fp32)
local function f32(x) return (string.unpack("f", string.pack("f", x))) end

-- rotary tables: cos, sin [1, T, 1, hd/2]: inv_freq = 1 / base^(2i/hd) and the angles t * inv_freq
-- in fp32 as the script's, cos and sin cached in bf16
local function rotary_tables(T, hd, device, base)
  base = base or 10000
  local inv = {}
  for i = 0, hd // 2 - 1 do inv[i + 1] = f32(1 / f32(base ^ f32((2 * i) / hd))) end
  -- the angles t * inv_freq as torch.outer in fp32 (an engine product), cos and sin of each
  local h = hd // 2
  local o = {dtype = "float32", device = device}
  local angles = F.mul(sr.arange(T, o):view(T, 1), sr.tensor(inv, o):view(1, h))
  return F.cast(F.cos(angles), "bfloat16"):view(1, T, 1, h), F.cast(F.sin(angles), "bfloat16"):view(1, T, 1, h)
end

-- x [B, T, H, hd]: half-split rotation of the pairs (x1, x2) = (x[..., :hd/2], x[..., hd/2:])
local function apply_rotary(x, cos, sin)
  local T = x.shape[2]
  cos, sin = cos:narrow(2, 1, T), sin:narrow(2, 1, T)
  -- y1 = x1 * cos + x2 * sin, y2 = x2 * cos - x1 * sin, cat(y1, y2): one fused kernel (F.rotary)
  return F.cast(F.rotary(x, cos, sin), x.dtype)              -- .type_as(x)
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

-- the collective of the distributed update: SUM over the ranks, in place. One process is its
-- own sum; a multi-process run needs the engine's collective (speedrun.dist, not there yet).
local function all_reduce_sum(buf, world_size)
  if world_size == 1 then return buf end
  local dist = sr.dist
  assert(dist and dist.all_reduce, "Muon: world_size > 1 needs speedrun.dist.all_reduce")
  dist.all_reduce(buf, "sum")
  return buf
end

-- Muon: SGD-Nesterov momentum whose update is orthogonalised and scaled by sqrt(max(1, rows/cols)),
-- distributed by ownership: matrix i (0-based) is computed by rank i mod world_size into a flat
-- bf16 buffer, which is summed over the ranks; every rank then applies every update.
-- The momentum lives in a device tensor too (the warmup sets it between steps).
local function Muon(params, lr, momentum, rank, world_size)
  local dev = params[1].device
  local total = 0
  for _, p in ipairs(params) do total = total + p:numel() end
  -- the lr lives in a device tensor, so a CUDA graph replay of step() reads the current value;
  -- the flat buffer is long-lived (the script allocates it each step, zeroed: the same values)
  local self = {params = params, initial_lr = lr, bufs = {},
                rank = rank or 0, world_size = world_size or 1,
                flat = sr.zeros(total, {dtype = "bfloat16", device = dev}),
                lr = sr.tensor({lr}, {dtype = "float32", device = dev}),
                momentum = sr.tensor({momentum}, {dtype = "float32", device = dev})}
  function self:set_lr_multiplier(m) self.lr:fill_(self.initial_lr * m) end
  function self:set_momentum(m) self.momentum:fill_(m) end
  function self:owns(i) return (i - 1) % self.world_size == self.rank end   -- i is 1-based
  function self:step()
    sr.no_grad(function()
      local flat = self.flat
      flat:zero_()
      -- generate the updates of the matrices this rank owns
      local at = 0
      for i, p in ipairs(self.params) do
        local n = p:numel()
        local g = p.grad
        if self:owns(i) then
          assert(g, "Muon: every matrix needs a gradient")
          local buf = self.bufs[p]
          if not buf then buf = sr.zeros(g.shape, {dtype = g.dtype, device = g.device}); self.bufs[p] = buf end
          buf:mul_(self.momentum):add_(g)
          g = g + self.momentum * buf                             -- Nesterov
          local u = newton_schulz5(g, 5)                          -- bf16
          u = u * math.sqrt(math.max(1, g.shape[1] / g.shape[2]))  -- scaled in bf16: 2 for c_fc, else 1
          flat:narrow(1, at + 1, n):copy_(u:reshape(n))
        end
        at = at + n
      end
      -- sync the updates across the ranks, then apply all of them
      all_reduce_sum(flat, self.world_size)
      at = 0
      for _, p in ipairs(self.params) do
        local n = p:numel()
        local u = F.cast(flat:narrow(1, at + 1, n):view(table.unpack(p.shape)), p.dtype)
        p:add_(u * (self.lr * -1))                                -- fp32, as add_(alpha=-lr)
        at = at + n
      end
    end)
  end
  function self:zero_grad() for _, p in ipairs(self.params) do p.grad = nil end end
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
  self:param("lamb", sr.tensor(0.5, {device = o.device, dtype = cfg.dtype}))   -- value-residual weight
  self:child("c_q", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_k", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_v", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_proj", Container {}):param("weight", sr.zeros(C, C, o))       -- zero init
end

-- the value residual: v <- (1 - lamb) v + lamb v1 (lamb and v are both bf16 here, so the mix is
-- bf16; with an fp32 lamb it would be computed in fp32 and rounded once to v's dtype)
local function value_residual(v, v1, lamb)
  local y = (1 - lamb) * v + lamb * v1
  return y.dtype == v.dtype and y or F.cast(y, v.dtype)
end
recipe.value_residual = value_residual     -- exposed for tests

-- x [1, T, C] (normed), v1 = block 0's raw V or nil, mask (speedrun.attention) -> y [1, T, C], v1
function Attention:forward(x, v1, rot, mask)
  local B, T, C = x.shape[1], x.shape[2], x.shape[3]
  local H = self.n_head
  local hd = C // H
  local q = linear(x, self.c_q.weight):view(B, T, H, hd)
  local k = linear(x, self.c_k.weight):view(B, T, H, hd)
  local v = linear(x, self.c_v.weight):view(B, T, H, hd)
  v1 = v1 or v                                   -- block 0: its own V, kept for the later blocks
  v = value_residual(v, v1, self.lamb)
  q, k = rmsnorm(q), rmsnorm(k)                                              -- QK-norm
  q, k = apply_rotary(q, rot[1], rot[2]), apply_rotary(k, rot[1], rot[2])    -- after the norm
  local y = F.flex_attention(q:transpose(2, 3), k:transpose(2, 3), v:transpose(2, 3), mask)   -- [B, H, T, hd]
  y = y:transpose(2, 3):reshape(B, T, C)
  return linear(y, self.c_proj.weight), v1
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
function Block:forward(x, v1, x0, rot, mask)
  x = shortcut(x, x0, self.lambdas)
  local a
  a, v1 = self.attn(rmsnorm(x), v1, rot, mask)
  x = x + a
  x = x + self.mlp(rmsnorm(x))
  return x, v1
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

-- the record's mask: causal AND same document AND q - k < window (tokens), block 128
local function make_mask(c, T, docs, device)
  return attention().block_mask {T = T, block = c.block, causal = true, doc_ids = docs,
                                 window = c.window, device = device}
end
recipe.make_mask = make_mask               -- exposed for tests

local GPT = nn.class("GPT")
function GPT:init(cfg, o)
  self.cfg = cfg
  local h = {}
  for i = 1, cfg.n_layer do h[i] = {tostring(i - 1), Block(cfg, o)} end
  local wte = Container {}
  wte:param("weight", F.cast(sr.empty(cfg.vocab_size, cfg.n_embd, o):normal_(0, 1), cfg.dtype))  -- N(0, 1), bf16
  self:child("transformer", Container {{"wte", wte}, {"h", Container(h)}})
  self:child("lm_head", Container {}):param("weight", sr.zeros(cfg.vocab_size, cfg.n_embd, o))  -- untied, zero init
  self.blocks = {}
  for i = 1, cfg.n_layer do self.blocks[i] = h[i][2] end
  self.rot = {rotary_tables(cfg.block_size, cfg.n_embd // cfg.n_head, o.device)}
  self.encoder_layers = cfg.n_layer // 2
  self.decoder_layers = cfg.n_layer - self.encoder_layers
  self:param("skip_weights", sr.ones(self.decoder_layers, {device = o.device, dtype = cfg.dtype}))
end

-- idx [T] int32 (one flat sequence) -> logits [1, T, V] (fp32); with targets [T] the mean loss
function GPT:forward(idx, targets, c)
  local T = idx:numel()
  local docs = document_ids(idx, c.eot)
  local mask = make_mask(c, T, docs, idx.device)
  local tr = self.transformer
  local x = F.embedding(idx:reshape(1, T), tr.wte.weight)          -- idx[None]
  x = rmsnorm(x)
  local x0, v1 = x, nil
  local skips = {}
  for i = 1, self.encoder_layers do
    x, v1 = self.blocks[i](x, v1, x0, self.rot, mask)
    skips[#skips + 1] = x
  end
  for i = 1, self.decoder_layers do
    x = unet_skip(x, table.remove(skips), self.skip_weights:narrow(1, i, 1))
    x, v1 = self.blocks[self.encoder_layers + i](x, v1, x0, self.rot, mask)
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
  local tr = ctx.model.transformer
  local matrix, scalar = {}, {}
  for _, p in ipairs(tr.h:parameters()) do
    if p:dim() == 2 then matrix[#matrix + 1] = p else scalar[#scalar + 1] = p end
  end
  scalar[#scalar + 1] = ctx.model.skip_weights
  ctx.scalar_params = scalar
  -- Adam without decay: the bf16 embedding and scalars with bf16 states (state_dtype "param"),
  -- the fp32 head with fp32 states; Muon on the block matrices (fp32 masters)
  local betas = c.betas or {0.9, 0.95}
  ctx.adam_bf16 = optim.AdamW({{params = {tr.wte.weight}, lr = c.embed_lr}, {params = scalar, lr = c.scalar_lr}},
                              {betas = betas, eps = 1e-8, weight_decay = 0, state_dtype = "param"})
  ctx.adam = optim.AdamW({{params = {ctx.model.lm_head.weight}, lr = c.head_lr}},
                         {betas = betas, eps = 1e-8, weight_decay = 0})
  ctx.muon = Muon(matrix, c.muon_lr, c.momentum, ctx.rank or 0, ctx.world_size or 1)
  ctx.optimizers = {ctx.adam_bf16, ctx.adam, ctx.muon}
  local N, w, d = ctx.steps, c.warmup, c.warmdown
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
    local _, loss = ctx.model(xi, yi, c)
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

-- validation: each row of inputs [B, T] is one flat sequence (the script's val loader, B = 1)
function recipe.eval(ctx, inputs)
  local B = inputs.shape[1]
  if B == 1 then return ctx.model(inputs:reshape(inputs:numel()), nil, ctx.config) end
  local rows = {}
  for b = 1, B do rows[b] = ctx.model(inputs:select(1, b):contiguous(), nil, ctx.config) end
  return F.cat(rows, 1)
end

return recipe
