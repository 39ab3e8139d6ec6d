-- tasks/record_18/meta.lua
return {
  record = 18,
  title = "Logit softcap 15, fp32 scalars, one Adam, fractional cooldown",
  date = "2025-01-04",
  summary = "softcap 15 tanh(z / 15) (was 30); vocabulary 50304 for the embeddings and the head; fp32 parameters except the bf16 embedding tables (scalars fp32 again); one Adam with groups embed 0.6, head 0.008, scalars 0.04; lr constant then linear to 0 over the last 40 % of steps; window floor(((1 - f) 128 + f 1856) / 128) blocks; loader serves the global batch; 1,390 steps",
  published = {time_s = 204.3, time_min = 3.4, ms_per_step = 148.08, hardware = "8xH100", source = "modded-nanogpt README #18 (official log)"},
  benchmark = {train_time_ms = 211840, val_loss = 3.277, n_steps = 1390, source = "llm-speedrunner record_18/results.json"},
  steps = 1390, tokens_per_step = 524288, val_loss = 3.277,
}
