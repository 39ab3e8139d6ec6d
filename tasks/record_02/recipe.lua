-- tasks/record_02/recipe.lua: NanoGPT speedrun record 2 (31.4 min, 06/06/24; llm-speedrunner
-- record_2): tuned AdamW + rotary embeddings. Changes against record 1 (records.md #2):
--
--   * the learned position table is gone; rotary embeddings (base 10000, half-split pairs
--     (i, i + hd/2): y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos) rotate q and k;
--   * the attention branch is scaled by 1/sqrt(2L) in the block (the same 1/sqrt(24) at L = 12);
--   * the token table (= head) keeps nn.Linear's default init U(+-1/sqrt(C)): the script no
--     longer re-initialises it;
--   * global clipping is replaced by per-parameter gradient normalisation g <- g / (||g|| + 1e-6);
--   * AdamW lr 1.8e-3 (betas (0.9, 0.95), wd 0.1 on every parameter);
--   * trapezoid schedule: warmup 256 steps, constant, linear to 0 over the last 2000;
--   * 524,288 tokens per step (8 x 64 x 1024), 9,536 steps.
-- Unchanged: L12 H12 C768, vocab 50257, weightless fp32 RMSNorm (eps 1e-6), exact GELU, tied
-- head, bf16 autocast for matmuls, fp32 validation.
--
-- Self-contained on purpose (like the PyTorch script). Parameter names follow the PyTorch state
-- dict, so weight files convert 1:1 (tasks/fidelity/). Contract: tasks/default/recipe.lua.
local sr = speedrun or require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim

local recipe = {name = "record_02"}

recipe.config = {
  -- CPU, seconds: for tests (schedule lengths scaled down with the run)
  micro = {
    model = {n_layer = 2, n_head = 4, n_embd = 64, vocab_size = 50257},
    batch = {mode = "bt", B = 4, T = 32},
    steps = 20, lr = 1.8e-3, warmup = 2, warmdown = 5, weight_decay = 0.1,
    target_val_loss = 10.6, val_tokens = 4096, val_batch = {B = 4, T = 32},
    amp = false,
  },
  -- one GPU, minutes, on the default corpus (tokens and schedule: the record's fractions)
  proxy = {
    model = {n_layer = 6, n_head = 6, n_embd = 384, vocab_size = 50257},
    batch = {mode = "bt", B = 32, T = 256},
    steps = 186, lr = 1.8e-3, warmup = 5, warmdown = 38, weight_decay = 0.1,
    target_val_loss = 5.3, val_tokens = 262144, val_batch = {B = 16, T = 256}, val_every = 125,
    amp = true,
  },
  -- the record: 524,288 tokens per step; on one GPU by accumulating 8 micro-batches of 64 x 1024
  full = {
    model = {n_layer = 12, n_head = 12, n_embd = 768, vocab_size = 50257},
    batch = {mode = "bt", B = 512, T = 1024}, micro_batch = 64,
    steps = 9536, lr = 1.8e-3, warmup = 256, warmdown = 2000, weight_decay = 0.1,
    target_val_loss = 3.28, val_tokens = 10485760, val_batch = {B = 64, T = 1024}, val_every = 128,
    amp = true,
  },
}

-- a Linear weight [out, in] with PyTorch's default init U(+-1/sqrt(in))
local function linear_weight(n_in, n_out, o)
  local b = 1 / math.sqrt(n_in)
  return sr.empty(n_out, n_in, o):uniform_(-b, b)
end

-- y = x W^T; under autocast both operands are bf16 (the fp32 master weight is cast at use)
local function linear(x, w, amp)
  if amp then return F.linear(F.cast(x, "bfloat16"), F.cast(w, "bfloat16")) end
  return F.linear(x, w)
end

-- weightless RMSNorm in fp32, returned in the input's dtype
local function rmsnorm(x, eps)
  local dt = x.dtype
  local y = F.rms_norm(F.cast(x, "float32"), nil, eps or 1e-6)
  return F.cast(y, dt)
end

-- rotary tables: cos, sin [1, T, 1, hd/2] (fp32), angle t * base^(-2i/hd)
local function rotary_tables(T, hd, device, base)
  base = base or 10000
  local c, s = {}, {}
  for t = 0, T - 1 do
    local rc, rs = {}, {}
    for i = 0, hd // 2 - 1 do
      local inv_freq = 1 / base ^ ((2 * i) / hd)
      rc[i + 1], rs[i + 1] = math.cos(t * inv_freq), math.sin(t * inv_freq)
    end
    c[t + 1], s[t + 1] = rc, rs
  end
  local o = {dtype = "float32", device = device}
  return sr.tensor(c, o):view(1, T, 1, hd // 2), sr.tensor(s, o):view(1, T, 1, hd // 2)
end

-- x [B, T, H, hd]: half-split rotation of the pairs (x1, x2) = (x[..., :hd/2], x[..., hd/2:])
local function apply_rotary(x, cos, sin)
  local T = x.shape[2]
  cos, sin = cos:narrow(2, 1, T), sin:narrow(2, 1, T)
  -- y1 = x1 * cos + x2 * sin, y2 = x2 * cos - x1 * sin, cat(y1, y2): one fused kernel (F.rotary),
  -- fp32 out as bf16 x times the fp32 tables promotes
  return F.rotary(x, cos, sin)
end

recipe.rotary_tables, recipe.apply_rotary = rotary_tables, apply_rotary   -- exposed for tests

-- modules -------------------------------------------------------------------------------------
local Container = nn.class("Container")      -- named children only (nn.ModuleDict / ModuleList)
function Container:init(children)
  for _, kv in ipairs(children) do self:child(kv[1], kv[2]) end
end

local Attention = nn.class("CausalSelfAttention")
function Attention:init(cfg, o)
  local C = cfg.n_embd
  self.n_head = cfg.n_head
  self:child("c_attn", Container {}):param("weight", linear_weight(C, 3 * C, o))
  self:child("c_proj", Container {}):param("weight", linear_weight(C, C, o))
end
function Attention:forward(x, rot, amp)
  local B, T, C = x.shape[1], x.shape[2], x.shape[3]
  local H = self.n_head
  local hd = C // H
  local q, k, v = table.unpack(F.split(linear(x, self.c_attn.weight, amp), C, 3))
  q, k, v = q:view(B, T, H, hd), k:view(B, T, H, hd), v:view(B, T, H, hd)
  q, k = apply_rotary(q, rot[1], rot[2]), apply_rotary(k, rot[1], rot[2])
  local dt = v.dtype                       -- sdpa runs in the autocast dtype
  q, k = F.cast(q, dt), F.cast(k, dt)
  local y = F.scaled_dot_product_attention(q:transpose(2, 3), k:transpose(2, 3), v:transpose(2, 3), {causal = true})
  y = y:transpose(2, 3):reshape(B, T, C)
  return linear(y, self.c_proj.weight, amp)
end

local MLP = nn.class("MLP")
function MLP:init(cfg, o)
  local C = cfg.n_embd
  self:child("c_fc", Container {}):param("weight", linear_weight(C, 4 * C, o))
  self:child("c_proj", Container {}):param("weight", linear_weight(4 * C, C, o))
end
function MLP:forward(x, amp)
  return linear(F.gelu(linear(x, self.c_fc.weight, amp)), self.c_proj.weight, amp)   -- exact GELU
end

local Block = nn.class("Block")
function Block:init(cfg, o)
  self:child("attn", Attention(cfg, o))
  self:child("mlp", MLP(cfg, o))
  self.attn_scale = 1 / math.sqrt(2 * cfg.n_layer)
end
function Block:forward(x, rot, amp)
  x = x + self.attn_scale * self.attn(rmsnorm(x), rot, amp)
  x = x + self.mlp(rmsnorm(x), amp)
  return x
end

local GPT = nn.class("GPT")
function GPT:init(cfg, o)
  self.cfg = cfg
  local h = {}
  for i = 1, cfg.n_layer do h[i] = {tostring(i - 1), Block(cfg, o)} end
  local wte = Container {}
  wte:param("weight", linear_weight(cfg.n_embd, cfg.vocab_size, o))    -- = lm_head.weight (tied)
  self:child("transformer", Container {{"wte", wte}, {"h", Container(h)}})
  self.blocks = {}
  for i = 1, cfg.n_layer do self.blocks[i] = h[i][2] end
  self.rot = {rotary_tables(cfg.block_size, cfg.n_embd // cfg.n_head, o.device)}
end

-- idx [B, T] int32 -> logits [B, T, V] (fp32); with targets nil and the mean cross-entropy
function GPT:forward(idx, targets, amp)
  local tr = self.transformer
  local x = F.embedding(idx, tr.wte.weight)
  for _, b in ipairs(self.blocks) do x = b(x, self.rot, amp) end
  x = rmsnorm(x)
  local logits = linear(x, tr.wte.weight, amp)                      -- [B, T, V], bf16 under autocast
  -- the loss in fp32 as the record computes it: the kernel reads the logits and works in fp32, the
  -- same numbers as casting them first, without an fp32 [B, T, V] copy. Training asks for the loss
  -- only, so the logits may become their own gradient in the same pass (inplace).
  if targets then return nil, F.cross_entropy(logits, targets, {inplace = true}) end
  return F.cast(logits, "float32")
end

-- the recipe ----------------------------------------------------------------------------------
function recipe.setup(ctx)
  local c = ctx.config
  local m = c.model
  ctx.amp = c.amp
  local T = math.max(c.batch.T, (c.val_batch or {}).T or 0)
  ctx.model = GPT({n_layer = m.n_layer, n_head = m.n_head, n_embd = m.n_embd, vocab_size = m.vocab_size,
                   block_size = T}, {device = ctx.device, dtype = "float32"})
  ctx.params = ctx.model:parameters()
  ctx.opt = optim.AdamW(ctx.params, {lr = c.lr, betas = {0.9, 0.95}, eps = 1e-8, weight_decay = c.weight_decay})
  -- trapezoid: (it+1)/w during warmup, 1, then (N - it)/d over the last d steps (it = step - 1)
  local N, w, d = ctx.steps, c.warmup, c.warmdown
  ctx.lr_mult = function(it)
    if it < w then return (it + 1) / w end
    if it < N - d then return 1.0 end
    return (N - it) / d
  end
end

-- host-side per-step work: the lr multiplier (AdamW keeps it in a device tensor)
function recipe.schedule(ctx, step)
  ctx.opt:set_lr_multiplier(ctx.lr_mult(step - 1))
end

function recipe.train_step(ctx, step, batch)
  local c = ctx.config
  local x, y = batch.x, batch.y
  local mb = c.micro_batch or x.shape[1]
  local n = x.shape[1] // mb
  local total
  for i = 1, n do
    local xi = n == 1 and x or x:narrow(1, (i - 1) * mb + 1, mb)
    local yi = n == 1 and y or y:narrow(1, (i - 1) * mb + 1, mb)
    local _, loss = ctx.model(xi, yi, ctx.amp)
    if n > 1 then loss = loss / n end
    loss:backward()
    total = total and total + loss:detach() or loss:detach()
  end
  -- per-parameter gradient normalisation (replaces clipping)
  sr.no_grad(function()
    for _, p in ipairs(ctx.params) do p.grad:div_(F.norm(p.grad) + 1e-6) end
  end)
  ctx.opt:step()
  ctx.opt:zero_grad()
  return total
end

-- the record validates without autocast: an fp32 forward
function recipe.eval(ctx, inputs)
  return ctx.model(inputs, nil, false)
end

return recipe
