-- tasks/default/recipe.lua: the default recipe of `speedrun train`, and the commented example
-- of the recipe contract (docs/harness.md). A GPT-2-style baseline written with the library:
-- learned token and position embeddings, pre-LayerNorm blocks, tied head (speedrun.gpt), AdamW
-- with a linear warm-up and cosine decay, global gradient clipping (on the device, so that the
-- step can be replayed as a CUDA graph).
--
-- A recipe file returns a table with:
--   config      named scales; the host picks one (--scale). Each scale gives the model sizes
--               (free-form: only the recipe reads `model`), the batch layout the host's loader
--               serves, the number of steps, the validation target and size.
--   setup(ctx)  builds the model and optimizer and keeps them in ctx (not timed).
--   schedule(ctx, step)  optional: the step's host-side work (learning-rate multipliers), run
--               before train_step; it is never captured into a CUDA graph.
--   train_step(ctx, step, batch)  one optimisation step on the host's batch (timed);
--               batch.x, batch.y are int32 token tensors (read-only: the host checks them);
--               returns the training loss (a tensor or a number) for the log, or nothing.
--               On a GPU the host replays it as a CUDA graph when that is safe (docs/harness.md):
--               a step that reads no host values (no :item(), no step-dependent numbers: those
--               belong in schedule, kept in device tensors) is captured after the warm-up.
--   cuda_graph  optional: false keeps every step eager.
--   eval(ctx, inputs)  logits [B, T, V] for validation inputs [B, T] (int32, 0-based ids).
--               Called under no_grad; must be causal and must not keep state: the host checks
--               both, and computes the validation cross-entropy itself from these logits.
-- ctx holds: scale, config (a copy of the scale's table), device ("cpu"/"cuda"), seed, steps,
-- tokens_per_step, out_dir (the only folder a scored recipe may write), workspace.
local sr = require "speedrun"
local F, nn, optim = sr.F, sr.nn, sr.optim
local gpt = require "speedrun.gpt"

local GPT2_VOCAB = 50257

local recipe = {name = "default"}

recipe.config = {
  -- CPU, seconds: for tests
  micro = {
    model = {n_layer = 1, n_head = 2, n_embd = 32},
    batch = {mode = "bt", B = 4, T = 32},     -- loader semantics: bt (records 1-11), seq, global
    steps = 20,
    lr = 3e-3, warmup = 2,
    target_val_loss = 10.6,                    -- validation target (mean over runs, p < 0.01 in score)
    val_tokens = 4096,                         -- fixed tokens from the start of the val shards
    val_batch = {B = 4, T = 32},               -- validation chunk handed to eval
  },
  -- CPU, about a minute: the main job of `speedrun train` on a machine without a GPU
  demo = {
    model = {n_layer = 2, n_head = 2, n_embd = 64},
    batch = {mode = "bt", B = 8, T = 64},
    steps = 120,
    lr = 3e-3, warmup = 10,
    target_val_loss = 8.3,
    val_tokens = 16384,
    val_every = 30,
  },
  -- one GPU, minutes, on the default corpus (in pieces). 600 steps, not yet tuned: on an H100 they
  -- ended at 4.929 +- 0.030 (seeds 1-3) against the ladder's target 5.3 (tasks/CALIBRATION.md, "The
  -- move, fifth calls"); `speedrun calibrate --tune-steps --recipe tasks/default/recipe.lua --name
  -- default` tunes it
  proxy = {
    model = {n_layer = 6, n_head = 6, n_embd = 384},
    batch = {mode = "bt", B = 32, T = 256},
    steps = 600,
    lr = 1.5e-3, warmup = 60,
    target_val_loss = 5.3,
    val_tokens = 262144,
    val_batch = {B = 16, T = 256},
    val_every = 100,
    dtype = "float32",
  },
  -- the record-1 shape (GPT-2 124M, 262,144 tokens per step on FineWeb), one GPU by accumulation
  full = {
    model = {n_layer = 12, n_head = 12, n_embd = 768},
    batch = {mode = "bt", B = 256, T = 1024},
    micro_batch = 32,
    steps = 24576,
    lr = 1.5e-3, warmup = 256,
    target_val_loss = 3.28,
    val_tokens = 10485760,
    val_batch = {B = 32, T = 1024},
    val_every = 1000,
    dtype = "float32",
  },
}

function recipe.setup(ctx)
  local c = ctx.config
  ctx.model = gpt.GPT {vocab_size = GPT2_VOCAB, block_size = c.batch.T, n_layer = c.model.n_layer,
                       n_head = c.model.n_head, n_embd = c.model.n_embd, device = ctx.device, dtype = c.dtype}
  ctx.opt = optim.AdamW(ctx.model:parameters(), {lr = c.lr, betas = {0.9, 0.95}, weight_decay = 0.1})
  ctx.schedule = optim.schedule.cosine(ctx.steps, c.warmup, 0.1)
end

-- the lr multiplier goes to AdamW's device-side schedule tensor
function recipe.schedule(ctx, step)
  ctx.opt:set_lr_multiplier(ctx.schedule(step))
end

function recipe.train_step(ctx, step, batch)
  local c = ctx.config
  ctx.opt:zero_grad()
  local x, y = batch.x, batch.y
  local mb = c.micro_batch or c.batch.B
  local n = c.batch.B // mb
  local total
  for i = 1, n do
    local xi = n == 1 and x or x:narrow(1, (i - 1) * mb + 1, mb)
    local yi = n == 1 and y or y:narrow(1, (i - 1) * mb + 1, mb)
    local _, loss = ctx.model(xi, yi)
    if n > 1 then loss = loss / n end
    loss:backward()
    total = total and total + loss:detach() or loss:detach()
  end
  optim.clip_grad_norm_(ctx.model:parameters(), 1.0)
  ctx.opt:step()
  return total
end

function recipe.eval(ctx, inputs)
  return ctx.model(inputs)
end

return recipe
