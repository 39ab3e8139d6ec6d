-- tasks/record_03/meta.lua
return {
  record = 3,
  title = "Muon introduced",
  date = "2024-10-04",
  summary = "Muon (Nesterov momentum orthogonalised by 5 bf16 Newton-Schulz steps) on the hidden matrices, AdamW on the head only, no clipping, fp32 logits, 7,000 steps",
  published = {time_s = 1494, time_min = 24.9, hardware = "8xH100", source = "modded-nanogpt README #3"},
  benchmark = {train_time_ms = 1386147, val_loss = 3.2813, n_steps = 7000, source = "llm-speedrunner record_3/results.json"},
  steps = 7000, tokens_per_step = 524288, val_loss = 3.2813,
}
