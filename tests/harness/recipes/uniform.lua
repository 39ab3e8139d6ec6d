-- A known model for val_bpb: eval returns zero logits over the GPT-2 vocabulary (a uniform
-- prediction), so every validation token costs exactly ln(50257) nats; training does nothing.
local sr = require "speedrun"
local V = 50257
local r = {name = "test-uniform"}
r.config = {
  micro = {batch = {mode = "bt", B = 4, T = 16}, steps = 4, target_val_loss = 11, val_tokens = 256,
           val_batch = {B = 4, T = 16}},
}
function r.setup(ctx) end
function r.train_step(ctx, step, batch) return math.log(V) end
function r.eval(ctx, x) return sr.zeros(x.shape[1], x.shape[2], V) end
return r
