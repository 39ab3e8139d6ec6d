-- tasks/record_08/meta.lua
return {
  record = 8,
  title = "Untied embedding and head",
  date = "2024-11-03",
  summary = "untied token embedding (Adam lr 0.3) and zero-init lm_head (Adam lr 0.002), RMSNorm after the embedding, Muon lr 0.02 with scale sqrt(max(1, rows/cols)), 4,578 steps",
  published = {time_s = 648.1, time_min = 10.8, ms_per_step = 141.87, hardware = "8xH100", source = "modded-nanogpt README #8 (official log)"},
  benchmark = {train_time_ms = 662205, val_loss = 3.2789, n_steps = 4578, source = "llm-speedrunner record_8/results.json"},
  steps = 4578, tokens_per_step = 524288, val_loss = 3.2789,
}
