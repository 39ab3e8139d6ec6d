-- tasks/record_17/meta.lua
return {
  record = 17,
  title = "Sparse value embeddings, half-truncated RoPE, one block without attention",
  date = "2024-12-17",
  summary = "3 value-embedding tables used by blocks 0-2 and 9-11 (012 ... 012; the others mix v <- l0 v); no attention in block 7; half-truncated rotary (32 frequencies (1/1024)^linspace(0, 1, 32) and 32 zeros for head dim 128, rotation in fp32); embedding tables V 50257, head padded to 50304; Muon with group counts not a multiple of the world size; 1,490 steps, cooldown 600",
  published = {time_s = 213.1, time_min = 3.57, ms_per_step = 144.0, hardware = "8xH100", source = "modded-nanogpt README #17 (official log)"},
  benchmark = {train_time_ms = 220374, val_loss = 3.2739, n_steps = 1490, source = "llm-speedrunner record_17/results.json"},
  steps = 1490, tokens_per_step = 524288, val_loss = 3.2739,
}
