-- speedrun.gpt: a small GPT-2-style model written with the engine's primitives, used by the
-- README demo and the tests: learned token and position embeddings, pre-LayerNorm blocks with
-- causal self-attention and a GELU MLP, a final LayerNorm and a head tied to the token table.
local sr = require "speedrun"
local nn = require "speedrun.nn"
local F = sr.F

local gpt = {}

local Block = nn.class("Block")
function Block:init(cfg, o)
  local C = cfg.n_embd
  local proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)
  self.n_head = cfg.n_head
  self:child("ln_1", nn.LayerNorm(C, o))
  self:child("c_attn", nn.Linear(C, 3 * C, {std = 0.02, dtype = o.dtype, device = o.device}))
  self:child("c_proj", nn.Linear(C, C, {std = proj_std, dtype = o.dtype, device = o.device}))
  self:child("ln_2", nn.LayerNorm(C, o))
  self:child("c_fc", nn.Linear(C, 4 * C, {std = 0.02, dtype = o.dtype, device = o.device}))
  self:child("c_fc_proj", nn.Linear(4 * C, C, {std = proj_std, dtype = o.dtype, device = o.device}))
end

-- x [B, T, C] -> [B, T, C]
function Block:forward(x)
  local B, T, C = x.shape[1], x.shape[2], x.shape[3]
  local H = self.n_head
  local qkv = self.c_attn(self.ln_1(x))                       -- [B, T, 3C]
  local q, k, v = table.unpack(F.split(qkv, C, 3))
  local function heads(t) return t:view(B, T, H, C // H):transpose(2, 3) end  -- [B, H, T, D]
  local y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), {causal = true})
  y = y:transpose(2, 3):reshape(B, T, C)
  x = x + self.c_proj(y)
  x = x + self.c_fc_proj(F.gelu(self.c_fc(self.ln_2(x))))
  return x
end

local GPT = nn.class("GPT")
gpt.GPT = GPT

-- cfg: {vocab_size, block_size, n_layer, n_head, n_embd [, dtype, device]}
function GPT:init(cfg)
  self.cfg = cfg
  local o = {dtype = cfg.dtype, device = cfg.device}
  self:child("wte", nn.Embedding(cfg.vocab_size, cfg.n_embd, {std = 0.02, dtype = o.dtype, device = o.device}))
  self:child("wpe", nn.Embedding(cfg.block_size, cfg.n_embd, {std = 0.02, dtype = o.dtype, device = o.device}))
  self.blocks = {}
  for i = 1, cfg.n_layer do self.blocks[i] = self:child("h" .. i, Block(cfg, o)) end
  self:child("ln_f", nn.LayerNorm(cfg.n_embd, o))
  self.pos = sr.arange(0, cfg.block_size, {dtype = "int32", device = cfg.device})
end

-- to(device [, dtype]): parameters as nn.Module:to, and the position table to the same device
function GPT:to(...)
  nn.Module.to(self, ...)
  self.pos = self.pos:to(self.wte.weight.device)
  return self
end

-- idx [B, T] int32 -> logits [B, T, V]; with targets [B, T] also the mean cross-entropy
function GPT:forward(idx, targets)
  local T = idx.shape[2]
  assert(T <= self.cfg.block_size, "sequence longer than block_size")
  local x = self.wte(idx) + self.wpe(self.pos:narrow(1, 1, T))
  for _, b in ipairs(self.blocks) do x = b(x) end
  local logits = F.linear(self.ln_f(x), self.wte.weight)     -- tied head
  if targets then return logits, F.cross_entropy(logits, targets) end
  return logits
end

return gpt
