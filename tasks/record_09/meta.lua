-- tasks/record_09/meta.lua
return {
  record = 9,
  title = "Value residual, embedding shortcut, logit softcap, Muon momentum warmup",
  date = "2024-11-06",
  summary = "value residual to block 0's V (learnable lamb per layer), x <- l0 x + l1 x0 at every block, logits 30 tanh(z/30), block scalars in their own Adam (lr 0.02), Muon momentum 0.85 -> 0.95 over 500 steps, 3,200 steps",
  published = {time_s = 493.7, time_min = 8.2, ms_per_step = 154.78, hardware = "8xH100", source = "modded-nanogpt README #9 (official log)"},
  benchmark = {train_time_ms = 505531, val_loss = 3.2785, n_steps = 3200, source = "llm-speedrunner record_9/results.json"},
  steps = 3200, tokens_per_step = 524288, val_loss = 3.2785,
}
