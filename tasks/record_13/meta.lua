-- tasks/record_13/meta.lua
return {
  record = 13,
  title = "Attention window warmup (64 -> 1792 tokens), Adam beta1 0.8, Muon lr 0.05",
  date = "2024-11-24",
  summary = "the sliding window grows linearly from 64 to 1,792 tokens in steps of 64 over training (validation uses the current window); Adam betas (0.8, 0.95); Muon lr 0.05, momentum warmup over 300 steps; 1,750 steps, cooldown 640",
  published = {time_s = 279.9, time_min = 4.66, ms_per_step = 160.89, hardware = "8xH100", source = "modded-nanogpt README #13 (official log)"},
  benchmark = {train_time_ms = 289805, val_loss = 3.2739, n_steps = 1750, source = "llm-speedrunner record_13/results.json"},
  steps = 1750, tokens_per_step = 524288, val_loss = 3.2739,
}
