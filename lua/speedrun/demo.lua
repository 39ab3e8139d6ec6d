-- speedrun.demo: the README's main job until the harness's `speedrun train` takes over.
-- Prepares the embedded default corpus if needed, then trains the tiny GPT on it (on the GPU
-- when one is usable, else on the CPU) and prints train and validation loss and tokens/s.
local sr = require "speedrun"
local data = require "speedrun.data"
local gpt, optim, F = sr.gpt, sr.optim, sr.F

local demo = {}

function demo.main(args)
  local device = sr.cuda_available() and "cuda" or "cpu"
  local steps = tonumber(args.steps) or (device == "cuda" and 300 or 50)
  local ok, err = data.prepare {corpus = "default"}
  if not ok then
    io.stderr:write("speedrun demo: cannot prepare the default corpus: " .. err .. "\n")
    return 1
  end
  local cfg = device == "cuda"
    and {vocab_size = 50257, block_size = 256, n_layer = 6, n_head = 6, n_embd = 384, B = 32}
    or {vocab_size = 50257, block_size = 64, n_layer = 2, n_head = 4, n_embd = 128, B = 8}
  cfg.device = device
  local B, T = cfg.B, cfg.block_size
  sr.manual_seed(1337)
  local model = gpt.GPT(cfg)
  local opt = optim.AdamW(model:parameters(), {lr = 1e-3, betas = {0.9, 0.95}, weight_decay = 0.1})
  local sched = optim.schedule.cosine(steps, math.min(20, steps // 5), 0.1)
  local train = data.loader {files = data.files("default", "train"), mode = "bt", B = B, T = T, device = device}
  local val = data.val_loader {files = data.files("default", "val"), mode = "bt", B = B, T = T, tokens = 8 * B * T, device = device}
  print(("speedrun demo: GPT %d layers, width %d, %d heads, %.2fM parameters, batch %dx%d, %d steps on %s")
        :format(cfg.n_layer, cfg.n_embd, cfg.n_head, model:num_parameters() / 1e6, B, T, steps, device))
  local function val_loss()
    val:reset()
    local total, n = 0, 0
    sr.no_grad(function()
      for x, y in val.next, val do
        local _, loss = model(x, y)
        total, n = total + loss:item(), n + 1
      end
    end)
    return total / n
  end
  print(("step 0: val loss %.4f"):format(val_loss()))
  sr.synchronize()
  local t0 = sr.clock()
  for step = 1, steps do
    local x, y = train:next()
    opt:set_lr_multiplier(sched(step - 1))
    local _, loss = model(x, y)
    opt:zero_grad()
    loss:backward()
    optim.clip_grad_norm_(model:parameters(), 1.0)
    opt:step()
    if step % 10 == 0 or step == steps then
      local l = loss:item()  -- synchronises
      print(("step %d/%d: train loss %.4f  %.0f tokens/s"):format(step, steps, l, step * B * T / (sr.clock() - t0)))
    end
  end
  print(("step %d: val loss %.4f"):format(steps, val_loss()))
  return 0
end

return demo
