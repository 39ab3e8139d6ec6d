-- tasks/record_07/meta.lua: the record was a PyTorch upgrade (2.4.1 -> 2.5.0) with no change to the
-- script, so its recipe is record 6's (the benchmark has no task 6 for that reason)
return {
  record = 7,
  title = "PyTorch 2.5 upgrade (recipe of record 6)",
  date = "2024-10-18",
  summary = "no change to the training script: PyTorch 2.4.1 -> 2.5.0 made the step faster; the recipe is record 6's",
  published = {time_s = 721.9, time_min = 12.0, ms_per_step = 141.82, hardware = "8xH100", source = "modded-nanogpt README #7 (official log)"},
  benchmark = {train_time_ms = 773072, val_loss = 3.276, n_steps = 5100, source = "llm-speedrunner record_7/results.json"},
  steps = 5100, tokens_per_step = 524288, val_loss = 3.276,
}
