-- tasks/record_14/meta.lua
return {
  record = 14,
  title = "Value embeddings: one V x 12C table chunked into per-layer value embeddings",
  date = "2024-12-04",
  summary = "a V x (12 x 768) embedding (463M parameters, embed Adam group) chunked into 12 per-layer value embeddings that replace block 0's V in the value mix v <- (1 - lamb) v + lamb ve_i; fp32 rotary tables; 1,530 steps, cooldown 600",
  published = {time_s = 264.6, time_min = 4.41, ms_per_step = 174.1, hardware = "8xH100", source = "modded-nanogpt README #14 (official logs, 38-run mean step time)"},
  benchmark = {train_time_ms = 273107, val_loss = 3.2739, n_steps = 1530, source = "llm-speedrunner record_14/results.json"},
  steps = 1530, tokens_per_step = 524288, val_loss = 3.2739,
}
