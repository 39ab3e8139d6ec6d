-- tasks/record_21/meta.lua
return {
  record = 21,
  title = "Smaller batch: 49,152-token sequences per GPU, 256K-token validation sequences, new FP8 head scales",
  date = "2025-01-26",
  summary = "the training sequence per GPU 48 x 1024 = 49,152 tokens (8 x 49,152 = 393,216 tokens per step, was 524,288); validation sequences of 4 x 64 x 1024 = 262,144 tokens per GPU (5 batches for 10,485,760 tokens); the FP8 head's scales x 2, W 2^9, grad 2^19 (were 2, 32, 2^29); head dim a parameter (128), qkv_w [3, H hd, C]; rotary tables over the longest sequence; 1,770 steps",
  published = {time_s = 176.0, time_min = 2.933, ms_per_step = 100.0, hardware = "8xH100", source = "modded-nanogpt README #21 (01/26/25)"},
  benchmark = {train_time_ms = 184262, val_loss = 3.2739, n_steps = 1770, source = "llm-speedrunner record_21/results.json"},
  steps = 1770, tokens_per_step = 393216, val_loss = 3.2739,
}
