-- tasks/record_05/meta.lua
return {
  record = 5,
  title = "Padded vocabulary, ReLU^2, zero-init projections, QK-norm, 6 heads of 128",
  date = "2024-10-14",
  summary = "vocab 50304, 6 heads of 128 with separate q/k/v, QK-norm, ReLU^2 MLP, zero-init output projections, no branch scale, 5,100 steps",
  published = {time_s = 910.5, time_min = 15.2, ms_per_step = 178.89, hardware = "8xH100", source = "modded-nanogpt README #5 (official log)"},
  benchmark = {train_time_ms = 949528, val_loss = 3.2751, n_steps = 5100, source = "llm-speedrunner record_5/results.json"},
  steps = 5100, tokens_per_step = 524288, val_loss = 3.2751,
}
