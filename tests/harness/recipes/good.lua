-- A small valid recipe for the harness tests: a tiny GPT on a 32-token synthetic stream.
local sr = require "speedrun"
local gpt = require "speedrun.gpt"
local optim = sr.optim

local r = {name = "test-good"}
r.config = {
  micro = {model = {n_layer = 1, n_head = 2, n_embd = 16}, batch = {mode = "bt", B = 4, T = 16},
           steps = 30, target_val_loss = 3.0, val_tokens = 512, val_batch = {B = 4, T = 16}, val_every = 10},
}
function r.setup(ctx)
  ctx.model = gpt.GPT {vocab_size = 32, block_size = 16, n_layer = 1, n_head = 2, n_embd = 16, device = ctx.device}
  ctx.opt = optim.AdamW(ctx.model:parameters(), {lr = 1e-2, betas = {0.9, 0.95}, weight_decay = 0})
end
function r.train_step(ctx, step, batch)
  local _, loss = ctx.model(batch.x, batch.y)
  ctx.opt:zero_grad()
  loss:backward()
  ctx.opt:step()
  return loss
end
function r.eval(ctx, x) return ctx.model(x) end
return r
