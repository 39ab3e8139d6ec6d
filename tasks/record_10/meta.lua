-- tasks/record_10/meta.lua
-- (the benchmark's record_10/results.json gives n_steps 3200, the step count of record 9; its
-- script runs 3,242 steps)
return {
  record = 10,
  title = "bf16 activations: the model in bf16, CastedLinear fp32 master weights",
  date = "2024-11-08",
  summary = "the whole model in bf16 (embeddings, scalars and their Adam states, activations, logits) with fp32 linear weights cast to bf16 at use; no autocast; 3,242 steps",
  published = {time_s = 467.6, time_min = 7.8, ms_per_step = 144.68, hardware = "8xH100", source = "modded-nanogpt README #10 (official log)"},
  benchmark = {train_time_ms = 477150, val_loss = 3.2782, n_steps = 3200, source = "llm-speedrunner record_10/results.json"},
  steps = 3242, tokens_per_step = 524288, val_loss = 3.2782,
}
