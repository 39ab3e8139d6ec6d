-- tasks/record_16/meta.lua
return {
  record = 16,
  title = "Split value embeddings, block sliding window, full and partial block masks",
  date = "2024-12-10",
  summary = "6 separate V x 768 value-embedding tables used in the order 0..5, 5..0; the sliding window in 128-token blocks (1 -> 14, a device tensor); block mask split into full blocks (no token mask) and partial blocks (causal AND same document); flattened state-dict names; 1,480 steps, cooldown 600",
  published = {time_s = 231.0, time_min = 3.80, ms_per_step = 157.2, hardware = "8xH100", source = "modded-nanogpt README #16 (official logs, 40-run mean step time)"},
  benchmark = {train_time_ms = 232971, val_loss = 3.2773, n_steps = 1480, source = "llm-speedrunner record_16/results.json"},
  steps = 1480, tokens_per_step = 524288, val_loss = 3.2773,
}
