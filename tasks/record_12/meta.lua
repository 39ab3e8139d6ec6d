-- tasks/record_12/meta.lua
return {
  record = 12,
  title = "FlexAttention over 64K-token document-masked sequences with a 1,024-token sliding window",
  date = "2024-11-19",
  summary = "one flat 65,536-token sequence per GPU (B = 1), attention masked to causal AND same document (ids = cumsum of EOT) AND q - k < 1024 through a block mask (block 128), 1,875 steps, warmdown 562",
  published = {time_s = 301.8, time_min = 5.03, ms_per_step = 161.84, hardware = "8xH100", source = "modded-nanogpt README #12 (official log)"},
  benchmark = {train_time_ms = 317839, val_loss = 3.2739, n_steps = 1875, source = "llm-speedrunner record_12/results.json"},
  steps = 1875, tokens_per_step = 524288, val_loss = 3.2739,
}
