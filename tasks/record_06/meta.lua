-- tasks/record_06/meta.lua
return {
  record = 6,
  title = "Distributed Muon",
  date = "2024-10-18",
  summary = "Muon's Newton-Schulz work split across ranks by matrix index (i mod world size), updates summed through one flat bf16 buffer; QK-norm before the rotary; 5,100 steps",
  published = {time_s = 783.1, time_min = 13.1, ms_per_step = 153.84, hardware = "8xH100", source = "modded-nanogpt README #6 (official log)"},
  benchmark = {train_time_ms = 766259, val_loss = 3.275, n_steps = 5100, source = "llm-speedrunner record_6/results.json"},
  steps = 5100, tokens_per_step = 524288, val_loss = 3.275,
}
