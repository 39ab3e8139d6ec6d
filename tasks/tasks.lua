-- tasks/tasks.lua: the task manifest (schema "speedrun.tasks/1"). Task i starts from record i's
-- recipe and aims at record i+1's training time (the Automated LLM Speedrunning Benchmark's
-- task i, reference/benchmark.md). Read by `speedrun task` (lua/speedrun/task.lua) and meant to
-- be read by `speedrun score --task N`; the fields are documented in docs/recipes.md.
--
-- Plain data only: the file returns a table and may be loaded with `load(src, name, "t", {})`.
local RULES = {
  "Edit only the files of the workspace: recipe.lua, and new .lua modules or .cu kernels next to it.",
  "Keep the recipe contract (tasks/default/recipe.lua, docs/harness.md): the config scales, setup(ctx), train_step(ctx, step, batch), eval(ctx, inputs).",
  "The host owns the data, the clock and the validation: do not read the data folder, do not modify the batch tensors, write only inside ctx.out_dir.",
  "eval must return logits [B, T, V] that are causal (a later token may not move earlier logits) and stateless (no learning from validation inputs).",
  "The validation target and the number of validation tokens come from the task (the target record), not from the workspace's config.",
  "Everything else is yours to change: the model, the optimizer, the schedule, the number of steps, the batch layout, the precision, new kernels.",
  "No new dependencies: only the speedrun library (speedrun.F, speedrun.nn, speedrun.optim, speedrun.autograd) and your own files.",
  "Train from scratch: under score a recipe reads only its source files from the workspace (.lua, .cu, .cuh, .h, .hpp; 512 KiB in all), so no weights or data files can be brought in.",
}

local DESCRIPTION = [[
Improve recipe.lua so that it reaches the validation loss target (mean over K seeded runs,
one-sided t-test p < 0.01) in the shortest training time. Training time is measured by the host
(device-synchronised, validation excluded); validation cross-entropy is computed by the host on
a fixed token set the recipe never sees in training. The score is the fraction of the human
speed-up recovered: FSR = (t_start - t) / (t_start - t_target), where t_start and t_target are
the calibrated times of the start and target records on the same card and scale.]]

return {
  schema = "speedrun.tasks/1",
  defaults = {
    workspace_files = {"recipe.lua"},           -- copied from the start record into a new workspace
    allowed_files = {"recipe.lua", "*.lua", "*.cu"},   -- what the agent may create or edit (workspace-relative globs)
    forbidden = {"the data folder", "the host (speedrun binary, lua/speedrun)", "the batch tensors", "files outside ctx.out_dir (writes)"},
    entry = "recipe.lua",
    metric = "train_time_ms", lower_is_better = true,
    target_val_loss = 3.28,                     -- full scale; other scales take the target record's config
    analysis_val_loss = 3.29,                   -- the benchmark's analysis threshold (FSR NaN above it)
    runs = 3, alpha = 0.01,                     -- speedrun score: K runs, t-test level
    job_ttl_min = 60, max_retries = 3,          -- the benchmark's limits per attempt
    fsr_clip = {0, 3},                          -- FSR outside [0, 3] scores 0 (the benchmark's analysis)
    rules = RULES,
    description = DESCRIPTION,
  },
  tasks = {
    {
      id = 1, start_record = 1, target_record = 2,
      start = "tasks/record_01", target = "tasks/record_02", hints = "hints/task_01",
      title = "From the GPT-2 baseline to rotary embeddings and a tuned AdamW",
      change = "remove learned positions, add RoPE; per-parameter gradient normalisation instead of clipping; lr 1.8e-3 with a trapezoid schedule; 2x batch, fewer steps",
      -- benchmark baseline times (results.json train_time, ms; 8xH100) and the README's times
      t_start_ms = 2968348, t_target_ms = 2209926, published_start_min = 45.0, published_target_min = 31.4,
      val_loss_start = 3.2766, val_loss_target = 3.2603,
    },
    {
      id = 2, start_record = 2, target_record = 3,
      start = "tasks/record_02", target = "tasks/record_03", hints = "hints/task_02",
      title = "Muon for the hidden matrices",
      change = "Muon (Nesterov momentum orthogonalised by Newton-Schulz) on the block matrices, AdamW on the head only; no gradient normalisation; fp32 logits; 7,000 steps",
      t_start_ms = 2209926, t_target_ms = 1386147, published_start_min = 31.4, published_target_min = 24.9,
      val_loss_start = 3.2603, val_loss_target = 3.2813,
    },
    {
      id = 3, start_record = 3, target_record = 4,
      start = "tasks/record_03", target = "tasks/record_04", hints = "hints/task_03",
      title = "Muon refinements: shape-scaled updates, per-block QKV",
      change = "scale Muon updates by sqrt(max(rows, cols)) with lr 3.6e-4; orthogonalise Q, K, V blocks separately; head lr 3.6e-3; no warmup; 6,200 steps",
      t_start_ms = 1386147, t_target_ms = 1301740, published_start_min = 24.9, published_target_min = 22.3,
      val_loss_start = 3.2813, val_loss_target = 3.2772,
    },
    {
      id = 4, start_record = 4, target_record = 5,
      start = "tasks/record_04", target = "tasks/record_05", hints = "hints/task_04",
      title = "A modern architecture: padded vocab, 128-wide heads, QK-norm, ReLU^2, zero-init projections",
      change = "vocab 50304; 6 heads of 128 with separate q/k/v; QK-norm; ReLU^2; zero-init output projections; no branch scale; 5,100 steps",
      t_start_ms = 1301740, t_target_ms = 949528, published_start_min = 22.3, published_target_min = 15.2,
      val_loss_start = 3.2772, val_loss_target = 3.2751,
    },
    {
      id = 5, start_record = 5, target_record = 6,
      start = "tasks/record_05", target = "tasks/record_06", hints = "hints/task_05",
      title = "Distributed Muon: Newton-Schulz work split across the ranks",
      change = "matrix i owned by rank i mod world size; owners write s*NS(u) into one flat bf16 buffer, summed over the ranks (all-reduce), every rank applies every update; QK-norm before the rotary",
      t_start_ms = 949528, t_target_ms = 766259, published_start_min = 15.2, published_target_min = 13.1,
      val_loss_start = 3.2751, val_loss_target = 3.275,
    },
    -- no task 6: record 6 -> 7 was a PyTorch upgrade with no change to the script
    {
      id = 7, start_record = 7, target_record = 8,
      start = "tasks/record_07", target = "tasks/record_08", hints = "hints/task_07",
      title = "Untied embedding and head",
      change = "separate N(0,1) embedding and zero-init lm_head, RMSNorm after the embedding; Adam embed lr 0.3, head lr 0.002; Muon lr 0.02 with scale sqrt(max(1, rows/cols)); 4,578 steps",
      t_start_ms = 773072, t_target_ms = 662205, published_start_min = 12.0, published_target_min = 10.8,
      val_loss_start = 3.276, val_loss_target = 3.2789,
    },
    {
      id = 8, start_record = 8, target_record = 9,
      start = "tasks/record_08", target = "tasks/record_09", hints = "hints/task_08",
      title = "Shortcuts and a logit softcap: value residual, embedding shortcut, tanh softcap, Muon momentum warmup",
      change = "mix every layer's V with block 0's V (learnable lamb); x <- l0 x + l1 x0 at each block; logits 30 tanh(z/30); block scalars in their own Adam; Muon momentum 0.85 -> 0.95 over 500 steps; 3,200 steps",
      t_start_ms = 662205, t_target_ms = 505531, published_start_min = 10.8, published_target_min = 8.2,
      val_loss_start = 3.2789, val_loss_target = 3.2785,
    },
    {
      id = 9, start_record = 9, target_record = 10,
      start = "tasks/record_09", target = "tasks/record_10", hints = "hints/task_09",
      title = "bf16 activations: the whole model in bf16 with fp32 linear masters cast at use",
      change = "token table, scalars (and their Adam states), activations and logits in bf16; linear weights fp32 cast to bf16 at use (CastedLinear); no autocast; 3,242 steps",
      t_start_ms = 505531, t_target_ms = 477150, published_start_min = 8.2, published_target_min = 7.8,
      val_loss_start = 3.2785, val_loss_target = 3.2782,
    },
    {
      id = 10, start_record = 10, target_record = 11,
      start = "tasks/record_10", target = "tasks/record_11", hints = "hints/task_10",
      title = "U-net skip connections and doubled learning rates",
      change = "encoder/decoder halves with learnable skip weights; learning rates doubled, the head's quadrupled (wte 0.6, head 0.008, Muon 0.04, scalars 0.04); Newton-Schulz as B = bA + cA^2; 3,000 steps",
      t_start_ms = 477150, t_target_ms = 442985, published_start_min = 7.8, published_target_min = 7.2,
      val_loss_start = 3.2782, val_loss_target = 3.2742,
    },
    {
      id = 11, start_record = 11, target_record = 12,
      start = "tasks/record_11", target = "tasks/record_12", hints = "hints/task_11",
      title = "Document-masked block-sparse attention over 64K-token flat sequences",
      change = "one flat 65,536-token sequence per GPU (B = 1, loader mode seq); document ids = cumulative count of EOT (50256); F.flex_attention over a block mask (block 128) for causal AND same document AND q - k < 1024; 1,875 steps, warmdown 562",
      t_start_ms = 442985, t_target_ms = 317839, published_start_min = 7.2, published_target_min = 5.03,
      val_loss_start = 3.2742, val_loss_target = 3.2739,
    },
    {
      id = 12, start_record = 12, target_record = 13,
      start = "tasks/record_12", target = "tasks/record_13", hints = "hints/task_12",
      title = "Attention window warmup and optimizer tweaks",
      change = "sliding window grows 64 -> 1792 tokens in steps of 64 over training (validation at the current window); Adam betas (0.8, 0.95); Muon lr 0.05, momentum warmup over 300 steps; 1,750 steps, cooldown 640",
      t_start_ms = 317839, t_target_ms = 289805, published_start_min = 5.03, published_target_min = 4.66,
      val_loss_start = 3.2739, val_loss_target = 3.2739,
    },
    {
      id = 13, start_record = 13, target_record = 14,
      start = "tasks/record_13", target = "tasks/record_14", hints = "hints/task_13",
      title = "Per-layer value embeddings",
      change = "a V x (12 x 768) embedding chunked into per-layer value embeddings ve_i mixed into V (v <- (1 - lamb) v + lamb ve_i) instead of block 0's V; the table in the embedding Adam group; fp32 rotary tables; 1,530 steps, cooldown 600",
      t_start_ms = 289805, t_target_ms = 273107, published_start_min = 4.66, published_target_min = 4.41,
      val_loss_start = 3.2739, val_loss_target = 3.2739,
    },
    {
      id = 14, start_record = 14, target_record = 15,
      start = "tasks/record_14", target = "tasks/record_15", hints = "hints/task_14",
      title = "U-net value embeddings, a hand-built block mask, size-grouped EMA Muon",
      change = "6 value-embedding chunks used in U-net order (0..5, 5..0) with two free mixing weights; block mask from kv-block lists (per-block document ranges, window in blocks, token mask everywhere); Muon with EMA momentum, matrices grouped by size, gathered updates scaled at apply; 1,480 steps",
      t_start_ms = 273107, t_target_ms = 241463, published_start_min = 4.41, published_target_min = 3.95,
      val_loss_start = 3.2739, val_loss_target = 3.2771,
    },
    {
      id = 15, start_record = 15, target_record = 16,
      start = "tasks/record_15", target = "tasks/record_16", hints = "hints/task_15",
      title = "Split value embeddings and a block-level sliding window with full and partial blocks",
      change = "6 separate V x 768 value-embedding tables (order 0..5, 5..0); window in 128-token blocks (1 -> 14) held in a device tensor; block mask split into full blocks (no token mask) and partial blocks (causal AND same document)",
      t_start_ms = 241463, t_target_ms = 232971, published_start_min = 3.95, published_target_min = 3.80,
      val_loss_start = 3.2771, val_loss_target = 3.2773,
    },
    {
      id = 16, start_record = 16, target_record = 17,
      start = "tasks/record_16", target = "tasks/record_17", hints = "hints/task_16",
      title = "Sparse value embeddings, half-truncated RoPE, one block without attention",
      change = "3 value-embedding tables used by blocks 0-2 and 9-11 (012 ... 012; the middle blocks mix v <- l0 v); no attention in block 7; rotary with 32 frequencies (1/1024)^linspace(0, 1, 32) and 32 zero frequencies for head dim 128, rotation in fp32; embedding tables V 50257, head padded to 50304; Muon groups need not divide by the world size; 1,490 steps",
      t_start_ms = 232971, t_target_ms = 220374, published_start_min = 3.80, published_target_min = 3.57,
      val_loss_start = 3.2773, val_loss_target = 3.2739,
    },
    {
      id = 17, start_record = 17, target_record = 18,
      start = "tasks/record_17", target = "tasks/record_18", hints = "hints/task_17",
      title = "Logit softcap 15, fp32 scalars, one Adam, fractional cooldown",
      change = "softcap 15 tanh(z / 15) (was 30); V 50304 everywhere; fp32 parameters except the bf16 embedding tables (scalars fp32, used as 0-d tensors); one Adam with groups embed 0.6, head 0.008, scalars 0.04; lr 1 then linear to 0 over the last 40 % of steps; window floor(((1 - f) 128 + f 1856) / 128) blocks; 1,390 steps",
      t_start_ms = 220374, t_target_ms = 211840, published_start_min = 3.57, published_target_min = 3.4,
      val_loss_start = 3.2739, val_loss_target = 3.277,
    },
    {
      id = 18, start_record = 18, target_record = 19,
      start = "tasks/record_18", target = "tasks/record_19", hints = "hints/task_18",
      title = "FP8 lm_head, offset sigmoid softcap, cooldown to 0.1",
      change = "lm_head in training as an FP8 custom function (x 2 and W 32 to e4m3, grad 2^29 to e5m2, bf16 out, dX bf16, dW fp32; evaluation through the bf16 head); logits cast to fp32, then 30 sigmoid(z / 7.5); lr 1 then linear to 0.1 over the last 40 % of steps; CastedLinear init U(+-sqrt(3) 0.5 / sqrt(fan_in)); window the next multiple of 128 >= 1728 f tokens; tables V 50257, head 50304; Adam groups head, embed, scalars; 1,395 steps",
      t_start_ms = 211840, t_target_ms = 199442, published_start_min = 3.4, published_target_min = 3.142,
      val_loss_start = 3.277, val_loss_target = 3.277,
    },
    {
      id = 19, start_record = 19, target_record = 20,
      start = "tasks/record_19", target = "tasks/record_20", hints = "hints/task_19",
      title = "Merged QKV with batched Muon, long/short windows, attention scale 0.12, Adam eps 1e-10",
      change = "one qkv_w [3, C, C] parameter per attention (init U(+-sqrt(3) 0.5 / sqrt(C))), Muon on every block parameter of 2+ dims with a batched Newton-Schulz (per-slice Frobenius norms); attention scale 0.12; long (n blocks) and short (n // 2, at least 1) windows, encoder layers L S S S L S, decoder the reverse; Adam eps 1e-10; 1,393 steps",
      t_start_ms = 199442, t_target_ms = 188680, published_start_min = 3.142, published_target_min = 2.992,
      val_loss_start = 3.277, val_loss_target = 3.2739,
    },
    {
      id = 20, start_record = 20, target_record = 21,
      start = "tasks/record_20", target = "tasks/record_21", hints = "hints/task_20",
      title = "Smaller batch: 49,152-token sequences per GPU, 256K-token validation sequences, FP8 head scales x 2, W 2^9, grad 2^19",
      change = "training sequence 48 x 1024 = 49,152 tokens per GPU (393,216 per step, was 524,288); validation sequences 4 x 64 x 1024 = 262,144 tokens per GPU (5 batches); the FP8 head's scales x 2, W 2^9, grad 2^19 (were 2, 32, 2^29); the head dim a parameter (128; qkv_w [3, H hd, C], c_proj [C, H hd]); rotary tables over max(seq_len, val_seq_len); 1,770 steps",
      t_start_ms = 188680, t_target_ms = 184262, published_start_min = 2.992, published_target_min = 2.933,
      val_loss_start = 3.2739, val_loss_target = 3.2739,
    },
  },
}
