-- tasks/record_19/meta.lua
return {
  record = 19,
  title = "FP8 lm_head, offset sigmoid softcap, cooldown to 0.1",
  date = "2025-01-13",
  summary = "lm_head in training as an FP8 matmul (x 2 and W 32 to e4m3, grad 2^29 to e5m2, bf16 out, dX bf16, dW fp32; evaluation bf16); logits cast to fp32, then 30 sigmoid(z / 7.5); lr constant then linear to 0.1 over the last 40 % of steps; CastedLinear init U(+-sqrt(3) 0.5 / sqrt(fan_in)); window the next multiple of 128 >= 1728 f tokens; embedding tables V 50257, head 50304; no DDP (per-parameter gradient all-reduce); 1,395 steps",
  published = {time_s = 188.5, time_min = 3.142, ms_per_step = 136.1, hardware = "8xH100", source = "modded-nanogpt README #19 (official log)"},
  benchmark = {train_time_ms = 199442, val_loss = 3.277, n_steps = 1395, source = "llm-speedrunner record_19/results.json"},
  steps = 1395, tokens_per_step = 524288, val_loss = 3.277,
}
