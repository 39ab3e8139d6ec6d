-- bench/gpt2_lua.lua: GPT-2 124M at the record-1 shape trained through the Lua front-end (what a
-- recipe runs): the model written with speedrun.F and autograd, float32 master weights cast to
-- bf16 at use (grads come back float32 through the cast), bf16 activations, cross-entropy that
-- makes dlogits in its forward over the logits, AdamW (fused kernel per tensor, device-side
-- lr/step) on synthetic uniform tokens. Reports eager and CUDA-graph ms/step,
-- tokens/s, peak GPU memory and the time from start to the first finished step.
--   speedrun run bench/gpt2_lua.lua [steps=100] [B=32] [T=1024] [layers=12]
-- env SR_T0 (seconds since the epoch at process launch, `date +%s.%N`) adds process start to
-- the first step; SPEEDRUN_NO_GRAPHS=1 skips the graph phase; SR_BENCH_CE_INPLACE=0 makes the
-- cross-entropy keep the logits (dlogits then made in the backward, over them). Not a test.
local t_script = speedrun.clock()
local sr = speedrun
local F = sr.F
local cuda = sr.cuda

local steps = tonumber(arg[1]) or 100
local B, Tn, L = tonumber(arg[2]) or 32, tonumber(arg[3]) or 1024, tonumber(arg[4]) or 12
local C, H, V, Vp = 768, 12, 50257, 50304
local dev = os.getenv("SR_BENCH_DEVICE") or "cuda"
if dev == "cpu" then C, H, V, Vp = 128, 2, 500, 512 end   -- a dry run of the script's logic
local D = C // H
local warm = math.max(2, steps // 10)
local n_eager = (steps - warm) // 2
local n_graph = steps - warm - n_eager

sr.manual_seed(1337)
local std, pstd = 0.02, 0.02 / math.sqrt(2 * L)
local function init(r, c, s) return sr.randn(r, c):mul_(s):to(dev) end   -- drawn on the CPU
local P = {wte = init(Vp, C, std), wpe = init(Tn, C, std)}
local layers = {}
for l = 1, L do
  layers[l] = {qkv = init(3 * C, C, std), proj = init(C, C, pstd), fc = init(4 * C, C, std), fc2 = init(C, 4 * C, pstd)}
end
local params = {P.wte, P.wpe}
for _, ly in ipairs(layers) do for _, k in ipairs {"qkv", "proj", "fc", "fc2"} do params[#params + 1] = ly[k] end end
for _, p in ipairs(params) do p.requires_grad = true end
local nparam = 0
for _, p in ipairs(params) do nparam = nparam + p:numel() end

local pos = sr.arange(0, Tn, {dtype = "int32", device = dev})
local x_buf = sr.zeros({B, Tn}, {dtype = "int32", device = dev})
local y_buf = sr.zeros({B, Tn}, {dtype = "int32", device = dev})
local attn_scale = 1 / math.sqrt(2 * L)
local bf = "bfloat16"
local ce_inplace = os.getenv("SR_BENCH_CE_INPLACE") ~= "0"

local function forward(idx, tgt)
  -- embeddings gathered from the float32 tables (their grads accumulate in float32), then bf16
  local x = F.cast(F.embedding(idx, P.wte) + F.embedding(pos, P.wpe), bf)
  for _, ly in ipairs(layers) do
    local qkv = F.linear(F.rms_norm(x), F.cast(ly.qkv, bf))    -- [B, T, 3C]
    local q, k, v = table.unpack(F.split(qkv, C, 3))
    local function heads(t) return t:view(B, Tn, H, D):transpose(2, 3) end
    local y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), {causal = true})
    y = y:transpose(2, 3):reshape(B, Tn, C)
    x = x + F.linear(y, F.cast(ly.proj, bf)) * attn_scale
    x = x + F.linear(F.gelu(F.linear(F.rms_norm(x), F.cast(ly.fc, bf))), F.cast(ly.fc2, bf))
  end
  local logits = F.linear(F.rms_norm(x), F.cast(P.wte, bf))    -- [B, T, Vp] tied head (padded vocabulary)
  -- inplace: the loss pass also writes dlogits over the logits (nothing reads them afterwards)
  return F.cross_entropy(logits, tgt, {inplace = ce_inplace})
end

local opt = sr.optim.AdamW(params, {lr = 6e-4, betas = {0.9, 0.95}, eps = 1e-8, weight_decay = 0.1})
local function step()
  opt:zero_grad()
  local loss = forward(x_buf, y_buf)
  loss:backward()
  opt:step()
  return loss
end

local function new_batch()
  x_buf:copy_(sr.randint(0, V, {B, Tn}))
  y_buf:copy_(sr.randint(0, V, {B, Tn}))
end

local function wall_now()
  local f = io.popen("date +%s.%N")
  local s = f and f:read("l")
  if f then f:close() end
  return tonumber(s)
end

print(("gpt2_lua: %d layers, C=%d, H=%d, vocab %d (padded %d), B=%d T=%d, %.1fM params, device %s"):format(
  L, C, H, V, Vp, B, Tn, nparam / 1e6, dev))

-- warm-up (eager): the first step creates optimizer state and cuBLASLt plans
local losses = {}
for i = 1, warm do
  new_batch()
  losses[#losses + 1] = step():item()
  if i == 1 then
    local t1 = sr.clock()
    local t0 = tonumber(os.getenv("SR_T0") or "")
    local w = t0 and wall_now()
    print(("first step finished: %.2f s after the script started%s (loss %.4f)"):format(t1 - t_script,
      w and (", %.2f s after process launch"):format(w - t0) or "", losses[1]))
  end
end

local function timed(n, fn)
  sr.synchronize()
  local t0 = sr.clock()
  local last
  for _ = 1, n do new_batch(); last = fn() end
  local l = last:item()                                         -- syncs
  return (sr.clock() - t0) / n, l
end

if dev == "cuda" then cuda.synchronize(); cuda.reset_peak() end
sr.reset_peak_memory(dev)
local ms_eager, l_eager = timed(n_eager, step)
local mem = dev == "cuda" and cuda.memory() or {peak = 0, reserved = 0, current = 0, driver_allocs = 0}
local live = sr.memory(dev)
print(("eager: %.2f ms/step, %.0f tokens/s, loss %.4f, peak %.2f GB (reserved %.2f GB), %d driver allocs; live tensors peak %.3f GB"):format(
  ms_eager * 1e3, B * Tn / ms_eager, l_eager, mem.peak / 1e9, mem.reserved / 1e9, mem.driver_allocs, live.peak / 1e9))

-- host time to issue one step (no sync inside): the step's launches queued, timed on the host
do
  new_batch()
  sr.synchronize()
  local t0 = sr.clock()
  local l = step()
  local issue = sr.clock() - t0
  l:item()
  print(("host time to issue one eager step: %.2f ms"):format(issue * 1e3))
end

if dev == "cuda" and os.getenv("SPEEDRUN_NO_GRAPHS") ~= "1" and n_graph > 0 then
  cuda.empty_cache()                      -- hand the eager cache back; the graph has its own pool
  cuda.reset_peak()
  local tc = sr.clock()
  local g = cuda.graph(step)
  cuda.synchronize()
  print(("graph: captured=%s%s in %.2f s"):format(tostring(g.captured), g.captured and "" or " (" .. tostring(g.reason) .. ")",
    sr.clock() - tc))
  local ms_graph, l_graph = timed(n_graph, function() return g:replay() end)
  local m = cuda.memory()
  print(("graph: %.2f ms/step, %.0f tokens/s, loss %.4f, peak %.2f GB (reserved %.2f GB)"):format(
    ms_graph * 1e3, B * Tn / ms_graph, l_graph, m.peak / 1e9, m.reserved / 1e9))
  print(("host overhead (eager vs graph): %.1f %%"):format(100 * (ms_eager - ms_graph) / ms_graph))
  g:free()
end
