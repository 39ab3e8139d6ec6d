-- tasks/record_03/recipe.lua: NanoGPT speedrun record 3 (24.9 min, 10/04/24; llm-speedrunner
-- record_3): Muon introduced. Changes against record 2 (records.md #3):
--
--   * the hidden matrices (every parameter of transformer.h: c_attn 3C x C as one matrix, c_proj,
--     c_fc, the MLP c_proj) are trained by Muon ("OrthogonalNesterov"): lr 0.018 (10x the Adam
--     lr), momentum 0.95 with Nesterov, the update orthogonalised by 5 Newton-Schulz steps in
--     bf16 with (a, b, c) = (3.4445, -4.7750, 2.0315), shape scale s = 1:
--         buf <- m buf + g;  u = g + m buf;  X = bf16(u) / (||u||_F + 1e-7)  (norm of the fp32 u)
--         (transpose when rows > cols)  5x: A = X X^T;  B = A X;  X = a X + b B + c A B
--         p <- p - lr * X
--   * AdamW only on the head (= the tied token table): lr 1.8e-3, betas (0.9, 0.95), wd 0;
--   * no gradient normalisation and no clipping;
--   * logits are cast to fp32 before the cross-entropy;
--   * 7,000 steps, trapezoid(warmup 250, warmdown 2000); both optimizers follow it.
-- Unchanged: the record-2 model (L12 H12 C768, rotary, 1/sqrt(2L) attention scale, exact GELU,
-- weightless RMSNorm eps 1e-6, tied head U(+-1/sqrt(C))), 524,288 tokens per step.
--
-- Muon is written here from primitives, as in the PyTorch script (the library has none).
-- Parameter names follow the PyTorch state dict (tasks/fidelity/). Contract: tasks/default/recipe.lua.
local sr = speedrun or require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim

local recipe = {name = "record_03"}

recipe.config = {
  -- CPU, seconds: for tests (schedule lengths scaled down with the run)
  micro = {
    model = {n_layer = 2, n_head = 4, n_embd = 64, vocab_size = 50257},
    batch = {mode = "bt", B = 4, T = 32},
    steps = 20, lr = 1.8e-3, muon_lr = 0.018, momentum = 0.95, warmup = 2, warmdown = 5,
    target_val_loss = 10.6, val_tokens = 4096, val_batch = {B = 4, T = 32},
    amp = false,
  },
  -- one GPU, minutes, on the default corpus (tokens and schedule: the record's fractions)
  proxy = {
    model = {n_layer = 6, n_head = 6, n_embd = 384, vocab_size = 50257},
    batch = {mode = "bt", B = 32, T = 256},
    steps = 112, lr = 1.8e-3, muon_lr = 0.018, momentum = 0.95, warmup = 4, warmdown = 32,
    target_val_loss = 5.3, val_tokens = 262144, val_batch = {B = 16, T = 256}, val_every = 125,
    amp = true,
  },
  -- the record: 524,288 tokens per step; on one GPU by accumulating 8 micro-batches of 64 x 1024
  full = {
    model = {n_layer = 12, n_head = 12, n_embd = 768, vocab_size = 50257},
    batch = {mode = "bt", B = 512, T = 1024}, micro_batch = 64,
    steps = 7000, lr = 1.8e-3, muon_lr = 0.018, momentum = 0.95, warmup = 250, warmdown = 2000,
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

-- Muon ----------------------------------------------------------------------------------------
-- Newton-Schulz iteration for the orthogonal factor of G (the record's zeroth_power_via_newtonschulz5):
-- bf16 throughout, normalised by the Frobenius norm of the fp32 input, transposed when tall.
local NS_A, NS_B, NS_C = 3.4445, -4.7750, 2.0315
local function newton_schulz5(G, steps, eps)
  steps, eps = steps or 5, eps or 1e-7
  local X = F.cast(F.cast(G, "bfloat16") / (F.norm(G) + eps), "bfloat16")
  local tall = G.shape[1] > G.shape[2]
  if tall then X = X:transpose(1, 2) end
  for _ = 1, steps do
    local A = F.matmul(X, X:transpose(1, 2))
    local B = F.matmul(A, X)
    X = NS_A * X + NS_B * B + NS_C * F.matmul(A, B)
  end
  if tall then X = X:transpose(1, 2) end
  return F.cast(X, G.dtype)
end
recipe.newton_schulz5 = newton_schulz5     -- exposed for tests

-- OrthogonalNesterov: SGD-Nesterov momentum whose update is orthogonalised; shape scale s = 1
local function Muon(params, lr, momentum)
  -- the lr lives in a device tensor, so a CUDA graph replay of step() reads the current value
  local self = {params = params, initial_lr = lr, momentum = momentum, bufs = {},
                lr = sr.tensor({lr}, {dtype = "float32", device = params[1].device})}
  function self:set_lr_multiplier(m) self.lr:fill_(self.initial_lr * m) end
  function self:step()
    sr.no_grad(function()
      for _, p in ipairs(self.params) do
        local g = p.grad
        if g then
          local buf = self.bufs[p]
          if not buf then buf = sr.zeros(g.shape, {dtype = g.dtype, device = g.device}); self.bufs[p] = buf end
          buf:mul_(self.momentum):add_(g)
          local u = g + self.momentum * buf                       -- Nesterov
          p:add_(newton_schulz5(u, 5) * -self.lr)
        end
      end
    end)
  end
  function self:zero_grad() for _, p in ipairs(self.params) do p.grad = nil end end
  return self
end

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
  -- AdamW on the head (= the tied token table); Muon on every matrix of transformer.h
  local tr = ctx.model.transformer
  ctx.adam = optim.AdamW({tr.wte.weight}, {lr = c.lr, betas = {0.9, 0.95}, eps = 1e-8, weight_decay = 0})
  ctx.muon = Muon(tr.h:parameters(), c.muon_lr, c.momentum)
  ctx.optimizers = {ctx.adam, ctx.muon}
  -- trapezoid: (it+1)/w during warmup, 1, then (N - it)/d over the last d steps (it = step - 1)
  local N, w, d = ctx.steps, c.warmup, c.warmdown
  ctx.lr_mult = function(it)
    if it < w then return (it + 1) / w end
    if it < N - d then return 1.0 end
    return (N - it) / d
  end
end

-- host-side per-step work: the lr multipliers, written to the optimizers' device tensors
function recipe.schedule(ctx, step)
  local mult = ctx.lr_mult(step - 1)
  for _, opt in ipairs(ctx.optimizers) do opt:set_lr_multiplier(mult) end
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
  for _, opt in ipairs(ctx.optimizers) do
    opt:step()
    opt:zero_grad()
  end
  return total
end

-- the record validates without autocast: an fp32 forward
function recipe.eval(ctx, inputs)
  return ctx.model(inputs, nil, false)
end

return recipe
