-- tasks/record_01/meta.lua: what record 1 is and what it published (read by `speedrun task`)
return {
  record = 1,
  title = "llm.c GPT-2 124M baseline (PyTorch port, records.md #1b)",
  date = "2024-05-28",
  summary = "GPT-2 124M: learned positions, weightless RMSNorm, exact GELU, tied head, AdamW 1.5e-3 with warmup and linear decay, 262,144 tokens/step",
  -- the record table of modded-nanogpt (8xH100); #1 there is the llm.c CUDA run
  published = {time_s = 2700, time_min = 45.0, hardware = "8xH100", source = "modded-nanogpt README #1"},
  -- the benchmark's baseline results.json (its authors' 3-run mean on their 8xH100)
  benchmark = {train_time_ms = 2968348, val_loss = 3.2766, n_steps = 24576, std_s = 20.2,
               source = "llm-speedrunner record_1/results.json"},
  steps = 24576, tokens_per_step = 262144, val_loss = 3.2766,
}
