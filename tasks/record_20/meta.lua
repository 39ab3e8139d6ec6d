-- tasks/record_20/meta.lua
return {
  record = 20,
  title = "Merged QKV, batched Muon, long/short windows, attention scale 0.12, Adam eps 1e-10",
  date = "2025-01-16",
  summary = "one qkv_w [3, 768, 768] parameter per attention (init U(+-sqrt(3) 0.5 / sqrt(768))) orthogonalised by a batched Newton-Schulz with per-slice norms; attention scale 0.12; long (n blocks) and short (n // 2) windows, encoder layers L S S S L S and the decoder the reverse; Adam eps 1e-10; 1,393 steps",
  published = {time_s = 179.5, time_min = 2.992, ms_per_step = 129.8, hardware = "8xH100", source = "modded-nanogpt README #20 (official log)"},
  benchmark = {train_time_ms = 188680, val_loss = 3.2739, n_steps = 1393, source = "llm-speedrunner record_20/results.json"},
  steps = 1393, tokens_per_step = 524288, val_loss = 3.2739,
}
