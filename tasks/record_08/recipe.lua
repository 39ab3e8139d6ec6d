-- tasks/record_08/recipe.lua: NanoGPT speedrun record 8 (10.8 min, 141.9 ms/step; llm-speedrunner
-- record_8): untied embedding and head. Changes against record 7 (= record 6; records.md #8):
--
--   * the token embedding and the head are separate parameters: transformer.wte.weight, PyTorch's
--     nn.Embedding init N(0, 1), and lm_head.weight [V, C], zero init (the first logits are all 0,
--     the first loss is ln V);
--   * a weightless RMSNorm right after the embedding (the residual stream starts at unit RMS);
--   * Adam (no weight decay) in two groups: the embedding at lr 0.3 and the head at lr 0.002,
--     betas (0.9, 0.95), eps 1e-8 (the script's two fused Adam optimizers; one AdamW with wd 0
--     and two groups here, the same arithmetic);
--   * Muon lr 0.02 (was 3.6e-4) with the shape scale s = sqrt(max(1, rows/cols)) in the (out, in)
--     layout (was sqrt(max(rows, cols))): s = 2 for c_fc (4C x C), 1 for every other matrix; every
--     Muon matrix must have a gradient (the script asserts it);
--   * 4,578 steps, warmdown 1,308 (warmup 0);
--   * the script forces the cuDNN SDPA backend (a PyTorch kernel choice: this engine has one
--     causal attention op, F.scaled_dot_product_attention).
-- Unchanged: the model of record 5 with record 6's QK-norm before the rotary, distributed Muon
-- (ownership by index, flat bf16 buffer summed over the ranks; world size 1 on one process),
-- Nesterov momentum 0.95 with 5 bf16 NS steps, 524,288 tokens per step, validation under autocast.
--
-- Muon, rotary and QK-norm are written here from primitives, as in the PyTorch script.
-- Parameter names follow the PyTorch state dict (tasks/fidelity/). Contract: tasks/default/recipe.lua.
local sr = speedrun or require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim

local recipe = {name = "record_08"}

recipe.config = {
  -- CPU, seconds: for tests (schedule lengths scaled down with the run)
  micro = {
    model = {n_layer = 2, n_head = 2, n_embd = 64, vocab_size = 50304},
    batch = {mode = "bt", B = 4, T = 32},
    steps = 20, embed_lr = 0.3, head_lr = 0.002, muon_lr = 0.02, momentum = 0.95, warmup = 0, warmdown = 6,
    target_val_loss = 10.6, val_tokens = 4096, val_batch = {B = 4, T = 32},
    amp = false,
  },
  -- one GPU, minutes, on the default corpus (tokens and schedule: the record's fractions)
  proxy = {
    model = {n_layer = 6, n_head = 3, n_embd = 384, vocab_size = 50304},
    batch = {mode = "bt", B = 32, T = 256},
    steps = 95, embed_lr = 0.3, head_lr = 0.002, muon_lr = 0.02, momentum = 0.95, warmup = 0, warmdown = 28,
    target_val_loss = 5.3, val_tokens = 262144, val_batch = {B = 16, T = 256}, val_every = 125,
    amp = true,
  },
  -- the record: 524,288 tokens per step; on one GPU by accumulating 8 micro-batches of 64 x 1024
  full = {
    model = {n_layer = 12, n_head = 6, n_embd = 768, vocab_size = 50304},
    batch = {mode = "bt", B = 512, T = 1024}, micro_batch = 64,
    steps = 4578, embed_lr = 0.3, head_lr = 0.002, muon_lr = 0.02, momentum = 0.95, warmup = 0, warmdown = 1308,
    target_val_loss = 3.28, val_tokens = 10485760, val_batch = {B = 64, T = 1024}, val_every = 125,
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

-- F.rms_norm(x, (C,)) with eps=None: PyTorch uses the epsilon of the fp32 opmath type
local EPS = 1.1920928955078125e-07
local function rmsnorm(x) return F.rms_norm(x, nil, EPS) end

-- rotary tables: cos, sin [1, T, 1, hd/2], computed in fp32 and cached in bf16
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
  return F.cast(sr.tensor(c, o):view(1, T, 1, hd // 2), "bfloat16"),
         F.cast(sr.tensor(s, o):view(1, T, 1, hd // 2), "bfloat16")
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
local NS_A, NS_B, NS_C = 3.4445, -4.7750, 2.0315
local function newton_schulz5(G, steps, eps)
  steps, eps = steps or 5, eps or 1e-7
  local X = F.cast(G, "bfloat16")
  X = X / F.cast(F.norm(X) + eps, "bfloat16")
  local tall = G.shape[1] > G.shape[2]
  if tall then X = X:transpose(1, 2) end
  for _ = 1, steps do
    local A = F.matmul(X, X:transpose(1, 2))
    local B = F.matmul(A, X)
    X = NS_A * X + NS_B * B + NS_C * F.matmul(A, B)
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
-- bf16 buffer, which is summed over the ranks; every rank then applies every update
local function Muon(params, lr, momentum, rank, world_size)
  local dev = params[1].device
  local total = 0
  for _, p in ipairs(params) do total = total + p:numel() end
  -- the lr lives in a device tensor, so a CUDA graph replay of step() reads the current value;
  -- the flat buffer is long-lived (the script allocates it each step, zeroed: the same values)
  local self = {params = params, initial_lr = lr, momentum = momentum, bufs = {},
                rank = rank or 0, world_size = world_size or 1,
                flat = sr.zeros(total, {dtype = "bfloat16", device = dev}),
                lr = sr.tensor({lr}, {dtype = "float32", device = dev})}
  function self:set_lr_multiplier(m) self.lr:fill_(self.initial_lr * m) end
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

-- modules -------------------------------------------------------------------------------------
local Container = nn.class("Container")      -- named children only (nn.ModuleDict / ModuleList)
function Container:init(children)
  for _, kv in ipairs(children) do self:child(kv[1], kv[2]) end
end

local Attention = nn.class("CausalSelfAttention")
function Attention:init(cfg, o)
  local C = cfg.n_embd
  self.n_head = cfg.n_head
  self:child("c_q", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_k", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_v", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_proj", Container {}):param("weight", sr.zeros(C, C, o))       -- zero init
end
function Attention:forward(x, rot, amp)
  local B, T, C = x.shape[1], x.shape[2], x.shape[3]
  local H = self.n_head
  local hd = C // H
  local q = linear(x, self.c_q.weight, amp):view(B, T, H, hd)
  local k = linear(x, self.c_k.weight, amp):view(B, T, H, hd)
  local v = linear(x, self.c_v.weight, amp):view(B, T, H, hd)
  q, k = rmsnorm(q), rmsnorm(k)                                              -- QK-norm
  q, k = apply_rotary(q, rot[1], rot[2]), apply_rotary(k, rot[1], rot[2])    -- after the norm
  local y = F.scaled_dot_product_attention(q:transpose(2, 3), k:transpose(2, 3), v:transpose(2, 3), {causal = true})
  y = y:transpose(2, 3):reshape(B, T, C)
  return linear(y, self.c_proj.weight, amp)
end

local MLP = nn.class("MLP")
function MLP:init(cfg, o)
  local C = cfg.n_embd
  self:child("c_fc", Container {}):param("weight", linear_weight(C, 4 * C, o))
  self:child("c_proj", Container {}):param("weight", sr.zeros(C, 4 * C, o))   -- zero init
end
function MLP:forward(x, amp)
  return linear(F.relu2(linear(x, self.c_fc.weight, amp)), self.c_proj.weight, amp)   -- relu(x)^2
end

local Block = nn.class("Block")
function Block:init(cfg, o)
  self:child("attn", Attention(cfg, o))
  self:child("mlp", MLP(cfg, o))
end
function Block:forward(x, rot, amp)
  x = x + self.attn(rmsnorm(x), rot, amp)
  x = x + self.mlp(rmsnorm(x), amp)
  return x
end

local GPT = nn.class("GPT")
function GPT:init(cfg, o)
  self.cfg = cfg
  local h = {}
  for i = 1, cfg.n_layer do h[i] = {tostring(i - 1), Block(cfg, o)} end
  local wte = Container {}
  wte:param("weight", sr.empty(cfg.vocab_size, cfg.n_embd, o):normal_(0, 1))   -- nn.Embedding: N(0, 1)
  self:child("transformer", Container {{"wte", wte}, {"h", Container(h)}})
  self:child("lm_head", Container {}):param("weight", sr.zeros(cfg.vocab_size, cfg.n_embd, o))  -- untied, zero init
  self.blocks = {}
  for i = 1, cfg.n_layer do self.blocks[i] = h[i][2] end
  self.rot = {rotary_tables(cfg.block_size, cfg.n_embd // cfg.n_head, o.device)}
end

-- idx [B, T] int32 -> logits [B, T, V] (fp32); with targets nil and the mean cross-entropy
function GPT:forward(idx, targets, amp)
  local tr = self.transformer
  local x = F.embedding(idx, tr.wte.weight)
  x = rmsnorm(x)                                                    -- norm after the embedding
  for _, b in ipairs(self.blocks) do x = b(x, self.rot, amp) end
  x = rmsnorm(x)
  local logits = linear(x, self.lm_head.weight, amp)                -- [B, T, V], bf16 under autocast
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
  -- Adam (AdamW without decay) in two groups, the embedding and the head; Muon on every matrix of
  -- transformer.h
  local tr = ctx.model.transformer
  ctx.adam = optim.AdamW({{params = {tr.wte.weight}, lr = c.embed_lr},
                          {params = {ctx.model.lm_head.weight}, lr = c.head_lr}},
                         {betas = {0.9, 0.95}, eps = 1e-8, weight_decay = 0})
  -- Muon's rank and world size: one process is rank 0 of 1 (the harness sets no others yet)
  ctx.muon = Muon(tr.h:parameters(), c.muon_lr, c.momentum, ctx.rank or 0, ctx.world_size or 1)
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

-- validation under autocast, as record 5 (the script's `with ctx`)
function recipe.eval(ctx, inputs)
  return ctx.model(inputs, nil, ctx.amp)
end

return recipe
