-- A small recipe with a schedule for the step tuner's test (test_tune.lua): a tiny GPT on the
-- 32-token synthetic stream, AdamW with a trapezoid learning rate (warmup, constant, warmdown)
-- whose phases `--scale-schedule` scales with the steps.
local sr = require "speedrun"
local gpt = require "speedrun.gpt"
local optim = sr.optim

local r = {name = "test-tunable"}
r.config = {
  micro = {
    model = {n_layer = 1, n_head = 2, n_embd = 16}, batch = {mode = "bt", B = 4, T = 16},
    steps = 40, lr = 1e-2, warmup = 4, warmdown = 12,
    target_val_loss = 3.0, val_tokens = 512, val_batch = {B = 4, T = 16},
  },
}
function r.setup(ctx)
  ctx.model = gpt.GPT {vocab_size = 32, block_size = 16, n_layer = 1, n_head = 2, n_embd = 16, device = ctx.device}
  ctx.opt = optim.AdamW(ctx.model:parameters(), {lr = ctx.config.lr, betas = {0.9, 0.95}, weight_decay = 0})
end
-- (it+1)/w during warmup, 1, then (N - it)/d over the last d steps (it = step - 1)
local function lr_scale(ctx, step)
  local N, w, d, it = ctx.steps, ctx.config.warmup, ctx.config.warmdown, step - 1
  if it < w then return (it + 1) / w end
  if it < N - d then return 1 end
  return (N - it) / d
end
function r.train_step(ctx, step, batch)
  ctx.opt:set_lr_multiplier(lr_scale(ctx, step))
  local _, loss = ctx.model(batch.x, batch.y)
  ctx.opt:zero_grad()
  loss:backward()
  ctx.opt:step()
  return loss
end
function r.eval(ctx, x) return ctx.model(x) end
return r
