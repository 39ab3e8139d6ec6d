-- tasks/record_02/meta.lua
return {
  record = 2,
  title = "Tuned AdamW + rotary embeddings",
  date = "2024-06-06",
  summary = "RoPE instead of learned positions, per-parameter gradient normalisation, lr 1.8e-3, trapezoid schedule, 524,288 tokens/step",
  published = {time_s = 1884, time_min = 31.4, hardware = "8xH100", source = "modded-nanogpt README #2"},
  benchmark = {train_time_ms = 2209926, val_loss = 3.2603, n_steps = 9536, source = "llm-speedrunner record_2/results.json"},
  steps = 9536, tokens_per_step = 524288, val_loss = 3.2603,
}
