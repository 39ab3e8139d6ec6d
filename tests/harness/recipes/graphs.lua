-- A recipe for the CUDA-graph tests of the trainer (tests/cuda/test_gpu_graph.lua, test_harness.lua):
-- a tiny GPT with AdamW whose scales select how the step is written.
--   micro    capturable: the lr schedule in recipe.schedule (AdamW's device-side sched tensor)
--   item     reads the loss on the host inside the step (:item())
--   stepuse  computes the lr from the step number inside the step (the schedule is flat over the
--            traced steps 4 and 5, so only the capture sees the step number used)
--   hostval  scales the loss by a host number that grows every step
--   late     a host number set by recipe.schedule changes after step 30 (found by an audit)
--   optout   recipe.cuda_graph = false
local sr = require "speedrun"
local gpt = require "speedrun.gpt"
local optim = sr.optim

local r = {name = "test-graphs"}
local base = {model = {n_layer = 1, n_head = 2, n_embd = 32}, batch = {mode = "bt", B = 4, T = 16},
              steps = 60, target_val_loss = 3.5, val_tokens = 512, val_batch = {B = 4, T = 16}}
r.config = {}
for _, s in ipairs {"micro", "item", "stepuse", "hostval", "late", "optout"} do r.config[s] = base end

function r.setup(ctx)
  ctx.model = gpt.GPT {vocab_size = 32, block_size = 16, n_layer = 1, n_head = 2, n_embd = 32, device = ctx.device}  -- head dim 16 (cuda: 16, 32, 64, 128)
  ctx.opt = optim.AdamW(ctx.model:parameters(), {lr = 1e-2, betas = {0.9, 0.95}, weight_decay = 0})
  ctx.sched = optim.schedule.cosine(ctx.steps, 5, 0.1)
  ctx.k, ctx.factor = 0, 1
  if ctx.scale == "optout" then r.cuda_graph = false end
end

function r.schedule(ctx, step)
  if ctx.scale ~= "stepuse" then ctx.opt:set_lr_multiplier(ctx.sched(step)) end
  if ctx.scale == "late" and step > 30 then ctx.factor = 0.5 end
end

function r.train_step(ctx, step, batch)
  local s = ctx.scale
  if s == "stepuse" then ctx.opt:set_lr_multiplier(ctx.sched(step)) end
  local _, loss = ctx.model(batch.x, batch.y)
  if s == "hostval" then ctx.k = ctx.k + 1; loss = loss * (1 + 1e-3 * ctx.k) end
  if s == "late" then loss = loss * ctx.factor end
  ctx.opt:zero_grad()
  loss:backward()
  if s == "item" and loss:item() ~= loss:item() then error("NaN loss") end
  ctx.opt:step()
  return loss
end

function r.eval(ctx, x) return ctx.model(x) end
return r
