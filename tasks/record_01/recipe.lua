-- tasks/record_01/recipe.lua: NanoGPT speedrun record 1 as the benchmark ships it
-- (llm-speedrunner record_1, records.md "#1b"): the PyTorch port of llm.c's GPT-2 124M baseline.
--
--   model      L12 H12 C768 (head dim 64), T 1024, vocab 50257 (not padded); learned position
--              embeddings; pre-norm blocks with a weightless RMSNorm (fp32, eps 1e-6) and a final
--              one; no biases; exact (erf) GELU MLP of width 4C; the attention output is
--              multiplied by 1/sqrt(24); head tied to the token table.
--   init       token table (= head) and position table N(0, 0.02); linear layers U(+-1/sqrt(fan_in)).
--   optimizer  AdamW on every parameter: lr 1.5e-3, betas (0.9, 0.95), eps 1e-8, wd 0.1;
--              global gradient-norm clipping at 1.0 (computed on the device: no host read, so
--              the step replays as a CUDA graph; the lr multiplier is set in recipe.schedule).
--   schedule   linear warmup over 256 steps, then linear decay to 0.1/1.1 of the peak.
--   batch      262,144 tokens per step (8 GPUs x 32 x 1024); 24,576 steps.
--   precision  bf16 autocast: matmul inputs in bf16, the residual stream and norms in fp32
--              (config.amp); the record validates without autocast (fp32).
--
-- Self-contained on purpose (like the PyTorch script): the model, the optimizer, the schedule and
-- the step are all here, written with the engine's primitives. Parameter names follow the PyTorch
-- state dict (transformer.wte.weight, transformer.h.0.attn.c_attn.weight, ...), so weight files
-- convert 1:1 (tasks/fidelity/). The recipe contract is in tasks/default/recipe.lua.
local sr = speedrun or require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim

local recipe = {name = "record_01"}

recipe.config = {
  -- CPU, seconds: for tests (schedule lengths scaled down with the run)
  micro = {
    model = {n_layer = 2, n_head = 4, n_embd = 64, vocab_size = 50257, block_size = 32},
    batch = {mode = "bt", B = 4, T = 32},
    steps = 20, lr = 1.5e-3, warmup = 2, weight_decay = 0.1, grad_clip = 1.0,
    target_val_loss = 10.6, val_tokens = 4096, val_batch = {B = 4, T = 32},
    amp = false,
  },
  -- one GPU, minutes, on the default corpus: a 6x384 model at T 256; steps and schedule are the
  -- record's fractions of the run (calibrated with `speedrun calibrate`, tasks/CALIBRATION.md)
  proxy = {
    model = {n_layer = 6, n_head = 6, n_embd = 384, vocab_size = 50257, block_size = 256},
    batch = {mode = "bt", B = 16, T = 256},
    steps = 841, lr = 1.5e-3, warmup = 9, weight_decay = 0.1, grad_clip = 1.0,
    target_val_loss = 5.3, val_tokens = 262144, val_batch = {B = 16, T = 256}, val_every = 200,
    amp = true,
  },
  -- the record: 262,144 tokens per step; on one GPU by accumulating 8 micro-batches of 32 x 1024
  full = {
    model = {n_layer = 12, n_head = 12, n_embd = 768, vocab_size = 50257, block_size = 1024},
    batch = {mode = "bt", B = 256, T = 1024}, micro_batch = 32,
    steps = 24576, lr = 1.5e-3, warmup = 256, weight_decay = 0.1, grad_clip = 1.0,
    target_val_loss = 3.28, val_tokens = 10485760, val_batch = {B = 32, T = 1024}, val_every = 128,
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
function Attention:forward(x, amp)
  local B, T, C = x.shape[1], x.shape[2], x.shape[3]
  local H = self.n_head
  local q, k, v = table.unpack(F.split(linear(x, self.c_attn.weight, amp), C, 3))
  local function heads(t) return t:view(B, T, H, C // H):transpose(2, 3) end   -- [B, H, T, hd]
  local y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), {causal = true})
  y = y:transpose(2, 3):reshape(B, T, C)
  y = linear(y, self.c_proj.weight, amp)
  return y / math.sqrt(24)                                                  -- the record's 1/sqrt(24)
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
end
function Block:forward(x, amp)
  x = x + self.attn(rmsnorm(x), amp)
  x = x + self.mlp(rmsnorm(x), amp)
  return x
end

local GPT = nn.class("GPT")
function GPT:init(cfg, o)
  self.cfg = cfg
  local h = {}
  for i = 1, cfg.n_layer do h[i] = {tostring(i - 1), Block(cfg, o)} end
  local wte = Container {}
  wte:param("weight", sr.empty(cfg.vocab_size, cfg.n_embd, o):normal_(0, 0.02))   -- tied with lm_head
  local wpe = Container {}
  wpe:param("weight", sr.empty(cfg.block_size, cfg.n_embd, o):normal_(0, 0.02))
  self:child("transformer", Container {{"wte", wte}, {"wpe", wpe}, {"h", Container(h)}})
  self.blocks = {}
  for i = 1, cfg.n_layer do self.blocks[i] = h[i][2] end
  self.pos = sr.arange(0, cfg.block_size, {dtype = "int32", device = o.device})
end

-- idx [B, T] int32 -> logits [B, T, V] (fp32); with targets nil and the mean cross-entropy
function GPT:forward(idx, targets, amp)
  local T = idx.shape[2]
  local tr = self.transformer
  local x = F.embedding(idx, tr.wte.weight) + F.embedding(self.pos:narrow(1, 1, T), tr.wpe.weight)
  for _, b in ipairs(self.blocks) do x = b(x, amp) end
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
  ctx.model = GPT({n_layer = m.n_layer, n_head = m.n_head, n_embd = m.n_embd, vocab_size = m.vocab_size,
                   block_size = m.block_size or c.batch.T}, {device = ctx.device, dtype = "float32"})
  ctx.params = ctx.model:parameters()
  ctx.opt = optim.AdamW(ctx.params, {lr = c.lr, betas = {0.9, 0.95}, eps = 1e-8, weight_decay = c.weight_decay})
  -- warmup (it+1)/w, then linear from 1 down to 0.1/1.1 at the last step (it = step - 1)
  local N, w = ctx.steps, c.warmup
  ctx.lr_mult = function(it)
    if it < w then return (it + 1) / w end
    local decay = (it - w) / math.max(1, N - w)
    return (0.1 + (1 - decay)) / (0.1 + 1)
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
  optim.clip_grad_norm_(ctx.params, c.grad_clip)
  ctx.opt:step()
  ctx.opt:zero_grad()
  return total
end

-- the record validates without autocast: an fp32 forward
function recipe.eval(ctx, inputs)
  return ctx.model(inputs, nil, false)
end

return recipe
