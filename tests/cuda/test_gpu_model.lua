-- test_gpu_model.lua: the tiny GPT (speedrun.gpt.GPT) gives the same loss and parameter
-- gradients on the GPU as on the CPU: float32 on both (relative error 1e-4 for the loss and each
-- gradient: the GPU sums in other orders, and embedding backward uses atomics), and a bfloat16
-- GPU run (parameters and activations bf16 via model:to("cuda", "bfloat16"); the loss comes out
-- float32) against the CPU float32 run within bf16 tolerance (loss 2e-2, gradients 6e-2 in
-- relative error over each tensor). Two shapes: head dim 32 (reference attention kernels) and
-- head dim 64 (flash attention in bf16). Skips (exit 77) without a usable GPU;
-- SR_TEST_DEVICE=cpu is a dry run of the comparisons on the CPU.
local sr = speedrun
local F = sr.F
local T = require "speedrun.testing"
local gpt = require "speedrun.gpt"

local DEV = os.getenv("SR_TEST_DEVICE") or "cuda"
local ok, why = sr.cuda.available()
if DEV == "cuda" and not ok then T.skip("no usable GPU: " .. tostring(why)) end

local function run(cfg, seed, device, dtype, idx, tgt)
  sr.manual_seed(seed)
  local model = gpt.GPT(cfg)                       -- built on the CPU in float32: same init everywhere
  if device ~= "cpu" or dtype ~= "float32" then model:to(device, dtype) end
  local _, loss = model(idx:to(device), tgt:to(device))
  loss:backward()
  local grads = {}
  for _, np in ipairs(model:named_parameters()) do grads[np[1]] = np[2].grad end
  return loss, grads, model
end

local cfgs = {
  {vocab_size = 67, block_size = 32, n_layer = 2, n_head = 2, n_embd = 64},
  {vocab_size = 101, block_size = 64, n_layer = 2, n_head = 2, n_embd = 128},
}
for ci, cfg in ipairs(cfgs) do
  local B, Tn = 3, cfg.block_size - 3
  local idx = sr.randint(0, cfg.vocab_size, {B, Tn})
  local tgt = sr.randint(0, cfg.vocab_size, {B, Tn})
  local rl, rg = run(cfg, 100 + ci, "cpu", "float32", idx, tgt)
  for _, case in ipairs {{"float32", 1e-4, 1e-4}, {"bfloat16", 2e-2, 6e-2}} do
    local dt, ltol, gtol = case[1], case[2], case[3]
    T.case(("tiny GPT %d %s %s vs cpu float32"):format(ci, DEV, dt), function()
      local l, g, model = run(cfg, 100 + ci, DEV, dt, idx, tgt)
      T.eq(l.device, DEV, "loss device")
      T.eq(l.dtype, "float32", "loss dtype")
      local e = T.rel_err(l, rl)
      T.ok(e <= ltol, ("loss %.6f vs %.6f: relative error %.3g > %g"):format(l:item(), rl:item(), e, ltol))
      local worst, wname = 0, ""
      for _, np in ipairs(model:named_parameters()) do
        local name = np[1]
        T.ok(g[name] ~= nil, "no gradient for " .. name)
        T.eq(g[name].dtype, dt, name .. " grad dtype")
        local ge = T.rel_err(g[name], rg[name])
        if not (ge <= worst) then worst, wname = ge, name end
      end
      io.stdout:write(("tiny GPT %d %s: loss rel err %.2e, worst grad rel err %.2e (%s)\n"):format(ci, dt, e, worst, wname))
      T.ok(worst <= gtol, ("gradient of %s: relative error %.3g > %g"):format(wname, worst, gtol))
    end)
  end
end
T.done()
