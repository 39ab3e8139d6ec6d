-- tasks/record_04/meta.lua
return {
  record = 4,
  title = "Muon improvements",
  date = "2024-10-11",
  summary = "Muon update scaled by sqrt(max(rows, cols)), QKV orthogonalised per block, Muon lr 3.6e-4, head lr 3.6e-3, no warmup, 6,200 steps",
  published = {time_s = 1339.1, time_min = 22.3, ms_per_step = 216.33, hardware = "8xH100", source = "modded-nanogpt README #4 (official log)"},
  benchmark = {train_time_ms = 1301740, val_loss = 3.2772, n_steps = 6200, source = "llm-speedrunner record_4/results.json"},
  steps = 6200, tokens_per_step = 524288, val_loss = 3.2772,
}
