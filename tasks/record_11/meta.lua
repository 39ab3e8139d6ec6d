-- tasks/record_11/meta.lua
-- (the benchmark's record_11/results.json gives n_steps 3242, the step count of record 10; its
-- script runs 3,000 steps)
return {
  record = 11,
  title = "U-net skip connections with learnable weights, doubled learning rates",
  date = "2024-11-10",
  summary = "encoder/decoder halves with learnable skip weights (init 1, scalar Adam), learning rates doubled, the head's quadrupled (wte 0.6, head 0.008, Muon 0.04, scalars 0.04), Newton-Schulz as B = bA + cA^2, 3,000 steps",
  published = {time_s = 433.6, time_min = 7.2, ms_per_step = 145.01, hardware = "8xH100", source = "modded-nanogpt README #11 (official log)"},
  benchmark = {train_time_ms = 442985, val_loss = 3.2742, n_steps = 3242, source = "llm-speedrunner record_11/results.json"},
  steps = 3000, tokens_per_step = 524288, val_loss = 3.2742,
}
