-- tasks/record_19/recipe.lua: NanoGPT speedrun record 19 (3.142 min, 136.1 ms/step; llm-speedrunner
-- record_19): an FP8 lm_head and the offset sigmoid softcap. Changes against record 18
-- (records.md #19):
--
--   * the lm_head in training is an FP8 matmul, a custom autograd function (the script's
--     nanogpt::mm op): x_f8 = e4m3(2 x), w_f8 = e4m3(32 W), out = x_f8 w_f8^T dequantised by 1/2
--     and 1/32, bf16 out (fast accumulation); backward g_f8 = e5m2(2^29 g), dX = g_f8 w_f8 (bf16),
--     dW = (x_f8^T g_f8)^T (fp32); the fp8 copies of x and W are saved for the backward.
--     Evaluation uses the bf16 CastedLinear head (the script's self.training switch);
--   * the logits are cast to fp32 first, then 30 sigmoid(z / 7.5) (= 15 tanh(z / 15) + 15);
--   * the lr multiplier: w = min((1 - it / N) / 0.4, 1), mult = w + 0.1 (1 - w) (cooldown to 0.1,
--     not 0);
--   * CastedLinear init U(+-sqrt(3) 0.5 / sqrt(fan_in)) (was PyTorch's U(+-1/sqrt(fan_in)));
--   * the window: the next multiple of 128 >= 1728 it / N tokens (at least 128), in blocks of 128
--     (1 -> 14);
--   * the embedding tables V 50257 again, the head padded to the next multiple of 128 (50304);
--   * Adam's groups in the order head 0.008, embed 0.6, scalars 0.04 (same values);
--   * no DDP: parameters broadcast from rank 0, each gradient all-reduced (AVG) after the
--     backward (one GPU: the 8 slices' losses averaged, as before); Muon's all_gather_into_tensor
--     (same values); 1,395 steps.
-- Unchanged from record 18: fp32 parameters except the bf16 embedding tables, fp32 scalars as 0-d
-- tensors, sparse value embeddings (012 ... 012), no attention in block 7, the half-truncated
-- rotary (fp32), document ids and full/partial block masks, U-net skips, the embedding shortcut,
-- size-grouped EMA Muon (lr 0.05, momentum warmup over 300 steps), state-dict names.
--
-- F.scaled_mm needs K and N multiples of 16: the head's width (a multiple of 128), the model
-- width and the tokens per slice (a multiple of the 128-token block) are. On the CPU the FP8 path
-- runs through the engine's CPU references (the fast accumulation is cuBLASLt's; the CPU sums
-- exactly). On one GPU the 8 ranks' slices are 8 consecutive micro batches, their losses
-- averaged. The rotary tables cover the longest T the run uses.
--
-- Muon, rotary, QK-norm, the shortcuts, the U-net, the value embeddings and the document ids are
-- written here from primitives, as in the PyTorch script. Parameter names follow the PyTorch state
-- dict. Contract: tasks/default/recipe.lua; the attention op: speedrun.attention.
local sr = speedrun or require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim

local recipe = {name = "record_19"}

recipe.config = {
  -- CPU, seconds: for tests; 2 blocks of 128 (window 1 -> 2 blocks); one value-embedding table
  -- (layers 0 and 3), no attention in layer 2; tables V 50257, head 50304
  micro = {
    model = {n_layer = 4, n_head = 2, n_embd = 64, vocab_size = 50257, value_embeds = 1, no_attn_layer = 2},
    batch = {mode = "seq", T = 256}, block = 128, eot = 50256,
    window_hi = 256,                          -- blocks 1 -> 2 of 128 (the record: 1728 -> 14 blocks)
    steps = 20, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.05, scalar_lr = 0.04, betas = {0.8, 0.95},
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 3, cooldown_frac = 0.4, final_lr = 0.1,
    fp8 = {x_s = 2, w_s = 32, grad_s = 2 ^ 29},
    target_val_loss = 10.6, val_tokens = 4096, val_batch = {B = 1, T = 256},
    dtype = "bfloat16",                       -- the embedding tables
  },
  -- one GPU, minutes, default corpus: one flat 8,192-token sequence per step, the record's windows
  -- in tokens; one value-embedding table (layers 0 and 5), no attention in layer 4; steps at the
  -- record's share of record 11's proxy (196 x 1395 / 3000), untuned (speedrun calibrate --tune-steps)
  proxy = {
    model = {n_layer = 6, n_head = 3, n_embd = 384, vocab_size = 50257, value_embeds = 1, no_attn_layer = 4},
    batch = {mode = "seq", T = 8192}, block = 128, eot = 50256,
    window_hi = 1728,
    steps = 74, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.05, scalar_lr = 0.04, betas = {0.8, 0.95},
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 17, cooldown_frac = 0.4, final_lr = 0.1,
    fp8 = {x_s = 2, w_s = 32, grad_s = 2 ^ 29},
    target_val_loss = 5.3, val_tokens = 262144, val_batch = {B = 1, T = 8192}, val_every = 125,
    dtype = "bfloat16",
  },
  -- the record: a global batch of 8 x 65,536 tokens; on one GPU 8 slices of 65,536 accumulated
  full = {
    model = {n_layer = 12, n_head = 6, n_embd = 768, vocab_size = 50257, value_embeds = 3, no_attn_layer = 7},
    batch = {mode = "seq", T = 524288}, micro_batch = 65536, block = 128, eot = 50256,
    window_hi = 1728,
    steps = 1395, embed_lr = 0.6, head_lr = 0.008, muon_lr = 0.05, scalar_lr = 0.04, betas = {0.8, 0.95},
    momentum = 0.95, momentum_start = 0.85, momentum_warmup = 300, cooldown_frac = 0.4, final_lr = 0.1,
    fp8 = {x_s = 2, w_s = 32, grad_s = 2 ^ 29},
    target_val_loss = 3.28, val_tokens = 10485760, val_batch = {B = 1, T = 65536}, val_every = 125,
    dtype = "bfloat16",
  },
}
-- the config keys counted in steps: `--steps N --scale-schedule` and the step tuner scale them
recipe.schedule_keys = {"momentum_warmup"}   -- the cooldown is a fraction of the steps
-- the attention op (loaded at first use, so the file loads where it is absent)
local function attention() return require "speedrun.attention" end

-- a CastedLinear weight [out, in]: U(+-sqrt(3) std), std = 0.5 / sqrt(in) (new in record 19;
-- PyTorch's default was U(+-1/sqrt(in)))
local function init_bound(n_in) return math.sqrt(3) * (0.5 * n_in ^ -0.5) end
recipe.init_bound = init_bound             -- exposed for tests
local function linear_weight(n_in, n_out, o)
  local b = init_bound(n_in)
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

-- torch.linspace(0, 1, n) in fp32: step = 1/(n - 1); the first half start + i step, the second
-- half end - (n - 1 - i) step (both in fp32)
local function linspace01(n)
  if n == 1 then return {0.0} end
  local step, v = f32(1 / (n - 1)), {}
  for i = 0, n - 1 do
    v[i + 1] = i < n // 2 and f32(step * i) or f32(1 - f32(step * (n - 1 - i)))
  end
  return v
end

-- the half-truncated rotary tables: cos, sin [1, T, 1, hd/2] in fp32 (the model is no longer
-- cast to bf16 as a whole: the buffers stay fp32). Frequencies: hd/4 of (1/1024)^linspace(0, 1,
-- hd/4) in fp32, then hd/4 zeros (cos 1, sin 0: identity on those pairs); the angles t * freq as
-- the script's einsum in fp32 (an engine product)
local function rotary_tables(T, hd, device)
  local q = hd // 4
  local freq = {}
  for i, e in ipairs(linspace01(q)) do freq[i] = f32(f32(1 / 1024) ^ e) end
  for i = q + 1, hd // 2 do freq[i] = 0.0 end
  local h = hd // 2
  local o = {dtype = "float32", device = device}
  local angles = F.mul(sr.arange(T, o):view(T, 1), sr.tensor(freq, o):view(1, h))
  return F.cos(angles):view(1, T, 1, h), F.sin(angles):view(1, T, 1, h)
end

-- x [B, T, H, hd]: half-split rotation of the pairs (x1, x2) = (x[..., :hd/2], x[..., hd/2:])
local function apply_rotary(x, cos, sin)
  local T = x.shape[2]
  cos, sin = cos:narrow(2, 1, T), sin:narrow(2, 1, T)
  -- y1 = x1 * cos + x2 * sin, y2 = x2 * cos - x1 * sin, cat(y1, y2): one fused kernel (F.rotary);
  -- bf16 x with fp32 tables computes in fp32 (the script's x.to(float32)), then .type_as(x)
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

-- Muon (as record 16): EMA momentum buf <- lerp(buf, g, 1 - m), Nesterov u = lerp(g, buf, m);
-- params grouped by size; within a group rank r orthogonalises params[base + r] for base = 1,
-- 1 + world, ...; the bf16 updates are all-gathered and every rank applies them with the shape
-- scale inside the step size: p <- p - lr sqrt(max(1, rows/cols)) u (fp32 arithmetic on p).
-- New in record 17: a group's count need not be a multiple of the world size.
local function Muon(params, lr, momentum, rank, world_size)
  local dev = params[1].device
  local o = {dtype = "float32", device = dev}
  local self = {groups = muon_groups(params), initial_lr = lr, bufs = {},
                rank = rank or 0, world_size = world_size or 1,
                lr = sr.tensor({lr}, o), momentum = sr.tensor({momentum}, o),
                one_minus = sr.tensor({1 - momentum}, o)}
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
          -- a rank past the group's end (the last round of a count that is not a multiple of W)
          -- gathers a placeholder; only the existing matrices are updated
          local own = ps[base + self.rank]
          if not own and not grp.placeholder then
            grp.placeholder = sr.zeros(grp.size, {dtype = "bfloat16", device = dev})
          end
          local gathered = all_gather({}, own and self:update(own) or grp.placeholder, W)
          for r = 1, math.min(W, #ps - base + 1) do
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
  self:param("lambdas", sr.tensor({0.5, 0.5}, {device = o.device, dtype = "float32"}))   -- value-mix weights, fp32
  self:child("c_q", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_k", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_v", Container {}):param("weight", linear_weight(C, C, o))
  self:child("c_proj", Container {}):param("weight", sr.zeros(C, C, o))       -- zero init
end

-- the value-embedding mix: v <- lambdas[1] v + lambdas[2] ve with fp32 lambdas as 0-d tensors
-- (the script's lambdas[0]): the bf16 v stays bf16; a block without a value embedding (ve nil):
-- v <- lambdas[1] v
local function value_mix(v, ve, lambdas)
  local y = lambdas:select(1, 1) * v
  if ve then y = y + lambdas:select(1, 2) * ve end
  return y.dtype == v.dtype and y or F.cast(y, v.dtype)
end
recipe.value_mix = value_mix               -- exposed for tests

-- x [1, T, C] (normed), ve [1, T, C] (this block's value embedding, or nil), mask -> y [1, T, C]
function Attention:forward(x, ve, rot, mask)
  local B, T, C = x.shape[1], x.shape[2], x.shape[3]
  local H = self.n_head
  local hd = C // H
  local q = linear(x, self.c_q.weight):view(B, T, H, hd)
  local k = linear(x, self.c_k.weight):view(B, T, H, hd)
  local v = linear(x, self.c_v.weight):view(B, T, H, hd)
  v = value_mix(v, ve and ve:reshape(B, T, H, hd), self.lambdas)   -- vi.view_as(v)
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
  return lambdas:select(1, 1) * x + lambdas:select(1, 2) * x0         -- 0-d fp32: stays bf16
end
recipe.shortcut = shortcut                 -- exposed for tests

-- a block; use_attn false: no attention (no `attn` child; record 17's block 7)
local Block = nn.class("Block")
function Block:init(cfg, o, use_attn)
  if use_attn then self:child("attn", Attention(cfg, o)) end
  self:child("mlp", MLP(cfg, o))
  self:param("lambdas", sr.tensor({1, 0}, {device = o.device, dtype = "float32"}))
end
function Block:forward(x, ve, x0, rot, mask)
  x = shortcut(x, x0, self.lambdas)
  if self.attn then x = x + self.attn(rmsnorm(x), ve, rot, mask) end
  x = x + self.mlp(rmsnorm(x))
  return x
end

-- the offset softcap: the logits cast to fp32 first, then 30 sigmoid(z / 7.5) (= 15 tanh(z / 15)
-- + 15, as 2 sigmoid(2 u) = tanh(u) + 1); record 18: 15 tanh(z / 15) on the bf16 logits
-- in place over the fp32 copy (z / 7.5 and the sigmoid share its buffer; the compiled script fuses
-- the chain)
local function softcap(logits) return F.cast(logits, "float32"):div_(7.5):sigmoid_() * 30 end
recipe.softcap = softcap                   -- exposed for tests

-- the FP8 head (the script's nanogpt::mm custom op with its autograd): x [M, K] (bf16), w [N, K]
-- (fp32) -> x w^T [M, N] bf16. Forward: x_f8 = e4m3(x_s x), w_f8 = e4m3(w_s w), a scaled matmul
-- dequantised by 1/x_s and 1/w_s (fast accumulation); the fp8 copies saved, transposed to the
-- layouts the backward's GEMMs read. Backward: g_f8 = e5m2(grad_s g); dX = g_f8 w_f8 (bf16,
-- scales 1/grad_s, 1/w_s); dW^T = x_f8^T g_f8 (fp32, scales 1/x_s, 1/grad_s), returned as dW.
-- F.scaled_mm: K and N multiples of 16 (M, K, N all are here).
local fp8_fns = {}
local function fp8_mm(x_s, w_s, grad_s)
  local key = x_s .. ":" .. w_s .. ":" .. grad_s
  if fp8_fns[key] then return fp8_fns[key] end
  local ag = sr.autograd or require "speedrun.autograd"
  fp8_fns[key] = ag.Function{
    name = "lm_head_fp8",
    forward = function(ctx, x, w)
      local x_f8, w_f8 = F.to_fp8(x, "e4m3", x_s), F.to_fp8(w, "e4m3", w_s)
      ctx.xt_f8, ctx.wt_f8 = x_f8:transpose(1, 2):contiguous(), w_f8:transpose(1, 2):contiguous()
      return F.scaled_mm(x_f8, w_f8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / w_s,
                                                      out_dtype = "bfloat16", use_fast_accum = true})
    end,
    backward = function(ctx, g)
      local g_f8 = F.to_fp8(g, "e5m2", grad_s)
      local dx = F.scaled_mm(g_f8, ctx.wt_f8:transpose(1, 2), {scale_a = 1 / grad_s, scale_b = 1 / w_s,
                                                               out_dtype = "bfloat16"})
      local gt_f8 = F.to_fp8(g:transpose(1, 2), "e5m2", grad_s)             -- g column-major
      local dwt = F.scaled_mm(ctx.xt_f8, gt_f8:transpose(1, 2), {scale_a = 1 / x_s, scale_b = 1 / grad_s,
                                                                 out_dtype = "float32"})
      return dx, dwt:transpose(1, 2)
    end,
  }
  return fp8_fns[key]
end

-- lm_head_fp8(x, w, s): x [..., K] flattened to [M, K], the FP8 matmul, reshaped to [..., N];
-- s = {x_s =, w_s =, grad_s =} (the record: 2, 32, 2^29)
local function lm_head_fp8(x, w, s)
  local shape = {table.unpack(x.shape)}
  local K = shape[#shape]
  local out = fp8_mm(s.x_s, s.w_s, s.grad_s)(x:reshape(x:numel() // K, K), w)
  shape[#shape] = w.shape[1]
  return out:reshape(table.unpack(shape))
end
recipe.lm_head_fp8 = lm_head_fp8           -- exposed for tests

-- a U-net skip: x + w * skip (w a one-element weight)
local function unet_skip(x, skip, w) return x + w * skip end
recipe.unet_skip = unet_skip               -- exposed for tests

-- document ids -------------------------------------------------------------------------------
-- the script's docs = (idx == 50256).cumsum(0): the running count of end-of-text tokens
local function document_ids(idx, eot)
  return F.cumsum(F.cast(F.eq(idx, eot), "int32"), 1)
end
recipe.document_ids = document_ids         -- exposed for tests

-- the block sliding window at iteration it (0-based) of N: the next multiple of the block (128)
-- at or above hi it / N tokens (the script's next_multiple_of_n(1728 step / N, n=128): at least
-- one block), in blocks: 128 -> 1792 tokens, 1 -> 14 blocks in the record
local function window_at(c, it, N)
  local v = c.window_hi * it / N
  local k = 1
  while k * c.block < v do k = k + 1 end
  return k
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

-- the value-embedding table of block i (1-based) with n_ve tables: the first n_ve blocks take
-- tables 1..n_ve, the last n_ve blocks tables 1..n_ve again, the others none (nil). 0-based for
-- 12 layers and 3 tables: 0, 1, 2, -, -, -, -, -, -, 0, 1, 2 (the script's 012 ... 012)
local function ve_index(i, n_layer, n_ve)
  if i <= n_ve then return i end
  if i > n_layer - n_ve then return i - (n_layer - n_ve) end
  return nil
end
recipe.ve_index = ve_index                 -- exposed for tests

-- the head's width: the next multiple of 128 (the script's next_multiple_of_n(vocab_size, n=128))
local function padded_vocab(v) return (v + 127) // 128 * 128 end
recipe.padded_vocab = padded_vocab         -- exposed for tests

local GPT = nn.class("GPT")
function GPT:init(cfg, o)
  self.cfg = cfg
  local h = {}
  for i = 1, cfg.n_layer do h[i] = {tostring(i - 1), Block(cfg, o, i - 1 ~= cfg.no_attn_layer)} end
  self:child("embed", Container {}):param("weight",
    F.cast(sr.empty(cfg.vocab_size, cfg.n_embd, o):normal_(0, 1), cfg.dtype))   -- N(0, 1), bf16
  self:child("blocks", Container(h))
  -- the value embeddings: `value_embeds` separate V x C tables (3 in the record), N(0, 1), bf16
  local tables = {}
  for k = 1, cfg.value_embeds do
    local e = Container {}
    e:param("weight", F.cast(sr.empty(cfg.vocab_size, cfg.n_embd, o):normal_(0, 1), cfg.dtype))
    tables[k] = {tostring(k - 1), e}
  end
  self:child("value_embeds", Container {{"embed", Container(tables)}})
  self.ve_tables = {}
  for k = 1, #tables do self.ve_tables[k] = tables[k][2].weight end
  -- untied, zero init, fp32, padded to the next multiple of 128 (50257 -> 50304)
  self:child("lm_head", Container {}):param("weight", sr.zeros(padded_vocab(cfg.vocab_size), cfg.n_embd, o))
  self.layers = {}
  for i = 1, cfg.n_layer do self.layers[i] = h[i][2] end
  self.rot = {rotary_tables(cfg.block_size, cfg.n_embd // cfg.n_head, o.device)}
  self.encoder_layers = cfg.n_layer // 2
  self.decoder_layers = cfg.n_layer - self.encoder_layers
  self:param("skip_weights", sr.ones(self.decoder_layers, {device = o.device, dtype = "float32"}))
end

-- the value embedding of block i: [1, T, C] or nil
function GPT:ve_of(ve, i) local k = ve_index(i, self.cfg.n_layer, #self.ve_tables); return k and ve[k] end

-- idx [T] int32 (one flat sequence), the window in blocks (number or 0-d int32 tensor) ->
-- logits [1, T, V'] (fp32, V' the padded head); with targets [T] the mean loss through the FP8
-- head (training), without them the bf16 head (evaluation: the script's self.training switch)
function GPT:forward(idx, targets, c, window)
  local T = idx:numel()
  local docs = document_ids(idx, c.eot)
  local mask = make_mask(c, T, docs, idx.device, window)
  local x = F.embedding(idx:reshape(1, T), self.embed.weight)      -- inputs[None]
  x = rmsnorm(x)
  local x0 = x
  local ve = {}                                                      -- value_embeds x [1, T, C]
  for k, w in ipairs(self.ve_tables) do ve[k] = F.embedding(idx:reshape(1, T), w) end
  local skips = {}
  for i = 1, self.encoder_layers do
    x = self.layers[i](x, self:ve_of(ve, i), x0, self.rot, mask)
    skips[#skips + 1] = x
  end
  for i = 1, self.decoder_layers do
    local l = self.encoder_layers + i
    x = unet_skip(x, table.remove(skips), self.skip_weights:select(1, i))   -- 0-d fp32
    x = self.layers[l](x, self:ve_of(ve, l), x0, self.rot, mask)
  end
  x = rmsnorm(x)
  if targets then
    local logits = softcap(lm_head_fp8(x, self.lm_head.weight, c.fp8))   -- bf16 out, fp32 softcap
    return nil, F.cross_entropy(logits, targets:reshape(1, T), {inplace = true})
  end
  return softcap(linear(x, self.lm_head.weight))                    -- [1, T, V'], fp32
end

-- the lr multiplier at iteration it (0-based) of N: t = 1 - it / N the time left, w = min(t /
-- frac, 1); w + final (1 - w): 1 while t >= frac, then linear to `final` (0.1) at the end
local function lr_multiplier(it, N, frac, final)
  local t = 1 - it / N
  local w = math.min(t / frac, 1.0)
  return w * 1.0 + (1 - w) * final
end
recipe.lr_multiplier = lr_multiplier       -- exposed for tests

-- the recipe ----------------------------------------------------------------------------------
function recipe.setup(ctx)
  local c = ctx.config
  local m = c.model
  local T = math.max(c.micro_batch or c.batch.T, (c.val_batch or {}).T or 0)
  ctx.model = GPT({n_layer = m.n_layer, n_head = m.n_head, n_embd = m.n_embd, vocab_size = m.vocab_size,
                   value_embeds = m.value_embeds, no_attn_layer = m.no_attn_layer,
                   block_size = T, dtype = c.dtype}, {device = ctx.device, dtype = "float32"})
  ctx.params = ctx.model:parameters()
  local model = ctx.model
  local matrix, scalar = {}, {}
  for _, p in ipairs(model.blocks:parameters()) do
    if p:dim() == 2 then matrix[#matrix + 1] = p else scalar[#scalar + 1] = p end
  end
  scalar[#scalar + 1] = ctx.model.skip_weights          -- every parameter under 2-D (fp32)
  ctx.scalar_params = scalar
  -- one Adam without decay, three groups: the fp32 head, the bf16 embeddings (embed and the
  -- value-embedding tables), the fp32 scalars; states in the parameter's dtype (torch's
  -- zeros_like: bf16 for the tables, fp32 otherwise). Muon on the block matrices.
  local betas = c.betas or {0.9, 0.95}
  local embed = {model.embed.weight}
  for _, w in ipairs(model.ve_tables) do embed[#embed + 1] = w end
  ctx.window_blocks = sr.tensor(window_at(c, 0, ctx.steps), {dtype = "int32", device = ctx.device})   -- 0-d
  ctx.adam = optim.AdamW({{params = {model.lm_head.weight}, lr = c.head_lr}, {params = embed, lr = c.embed_lr},
                          {params = scalar, lr = c.scalar_lr}},
                         {betas = betas, eps = 1e-8, weight_decay = 0, state_dtype = "param"})
  ctx.muon = Muon(matrix, c.muon_lr, c.momentum, ctx.rank or 0, ctx.world_size or 1)
  ctx.optimizers = {ctx.adam, ctx.muon}
  local N, frac, final = ctx.steps, c.cooldown_frac, c.final_lr
  ctx.lr_mult = function(it) return lr_multiplier(it, N, frac, final) end
end

function recipe.schedule(ctx, step)
  local mult = ctx.lr_mult(step - 1)
  for _, opt in ipairs(ctx.optimizers) do opt:set_lr_multiplier(mult) end
  ctx.muon:set_momentum(muon_momentum(ctx.config, step - 1))
  ctx.window_blocks:fill_(window_at(ctx.config, step - 1, ctx.steps))   -- the device copy, every step
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
