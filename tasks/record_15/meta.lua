-- tasks/record_15/meta.lua
return {
  record = 15,
  title = "U-net value embeddings, hand-built block mask, size-grouped EMA Muon",
  date = "2024-12-08",
  summary = "6 value-embedding chunks used in U-net order (0..5, 5..0) with two free mixing weights v <- l0 v + l1 ve; block mask from kv-block lists (per-block document ranges, block causal, window in blocks, token mask on every block); Muon with EMA momentum, matrices grouped by size, all-gathered updates; 1,480 steps, cooldown 600",
  published = {time_s = 236.9, time_min = 3.95, ms_per_step = 161.1, hardware = "8xH100", source = "modded-nanogpt README #15 (official logs, 75-run mean step time)"},
  benchmark = {train_time_ms = 241463, val_loss = 3.2771, n_steps = 1480, source = "llm-speedrunner record_15/results.json"},
  steps = 1480, tokens_per_step = 524288, val_loss = 3.2771,
}
