-- speedrun.harness.plausible: checks on a score that cost an honest recipe nothing
-- (docs/harness.md "Threat model"): validation losses identical across seeds (a recipe that
-- ignores its seed, or weights trained before the run), a mean validation loss far below what the
-- task's target record reaches (a model that sees what it predicts), a final validation far
-- costlier per token than training (work moved into the untimed eval), a setup that works longer
-- than half the training (work moved into the untimed setup), and whether an FSR lies
-- within the calibration's own noise. A flag turns a `pass` into `flagged` (exit 1): a person
-- looks before it counts. The per-run checks look at every run the score counts, valid or above
-- the target (round 17).
local fmt = string.format
local sqrt, abs = math.sqrt, math.abs

local M = {}

M.BELOW = 0.25      -- flagged: a mean val loss more than 25% below the target record's calibrated one
-- flagged: a run whose final validation spent more than this many times the training's time per
-- token (eval_time_ms / val_tokens against train_time_ms / tokens). eval is untimed, so work done
-- there is free: an eval that trains (by hand, on kept batches, without autograd: stateless, so no
-- other check sees it) costs hundreds of times a training step per token; a forward pass costs
-- about a third of one. Measured: 1.7 (tests/harness/recipes/good.lua, CPU, micro; tiny batches'
-- overheads), 750-1000 (an eval that trains a bigram table on every call)
M.EVAL_RATIO = 25
-- flagged: a run whose loading and setup worked (their time less NVRTC compiles and the engine's
-- one-time setup: driver allocations, GEMM plans, module loads) more than this fraction of its
-- train time: both are untimed, so training there is free (backward and optimizer steps are refused
-- there; hand-written training is not). Measured, every record and the default recipe at micro
-- scale on the CPU (restricted): 0.01-0.13; on an H100 at proxy (trains of ~1-6 s), records 1, 5,
-- 12, 19, 21: 0.019, 0.072, 0.193, 0.272, 0.492, most of it records 12-21's rotary tables built in
-- Lua (4.2 M math.cos/sin for record 21), since built with F.cos/F.sin (0.8 s -> 0.1 s on one CPU
-- core; on the GPU not yet measured)
M.SETUP_RATIO = 0.5

-- the metrics of a run the score counts (valid, or complete but above the target: its loss is in
-- the t-test and its train time in the FSR's mean), else nil. Every check below looks at all of
-- them: a run that lands just above the target on purpose was never looked at (round 17's
-- cheat_missrun: one run in five trained a bigram table in its untimed eval, 0.1 ms on the clock)
local function counted(r)
  return (r.valid or r.status == "invalid") and type(r.metrics) == "table" and r.metrics or nil
end

-- the flags of a score: {message, ...}. runs: the runs' results; sum: the summary (cli.summarize);
-- ref_next: the target record's calibration entry (or nil); name: its name
function M.flags(runs, sum, ref_next, name)
  local flags, seen = {}, {}
  for _, r in ipairs(runs) do
    local m = counted(r)
    local vl = m and m.val_loss
    if type(vl) == "number" then
      local other = seen[vl]
      if other then
        flags[#flags + 1] = fmt("identical validation losses on seeds %d and %d (%.6f): a recipe that ignores its seed, "
                                .. "or weights trained before the run", other, r.seed, vl)
        break
      end
      seen[vl] = r.seed
    end
  end
  for _, r in ipairs(runs) do
    local m = counted(r)
    local ratio = m and type(m.eval_time_ms) == "number" and type(m.val_tokens) == "number" and m.val_tokens > 0
                  and type(m.train_time_ms) == "number" and m.train_time_ms > 0 and type(m.tokens) == "number" and m.tokens > 0
                  and (m.eval_time_ms / m.val_tokens) / (m.train_time_ms / m.tokens)
    if ratio and ratio > M.EVAL_RATIO then
      flags[#flags + 1] = fmt("seed %d: the final validation spent %.0fx the training's time per token (flagged above %d): "
                              .. "work in the untimed eval (training there) or an eval far costlier than the model's forward",
                              r.seed, ratio, M.EVAL_RATIO)
      break
    end
  end
  for _, r in ipairs(runs) do
    local m = counted(r)
    local work = m and (m.setup_work_ms or m.setup_time_ms)
    if type(work) == "number" and type(m.train_time_ms) == "number" and work > M.SETUP_RATIO * m.train_time_ms then
      flags[#flags + 1] = fmt("seed %d: setup worked %.0f ms, %.1fx the train time (%.0f ms; flagged above %.1fx): "
                              .. "work in the untimed setup (training there)", r.seed, work, work / math.max(m.train_time_ms, 1e-9),
                              m.train_time_ms, M.SETUP_RATIO)
      break
    end
  end
  local mean = sum.val_loss and sum.val_loss.mean
  local ref = ref_next and ref_next.val_loss_mean
  if type(mean) == "number" and type(ref) == "number" and mean < ref * (1 - M.BELOW) then
    flags[#flags + 1] = fmt("mean validation loss %.4f is far below what %s reaches (%.4f; flagged below %.4f)",
                            mean, name or "the target record", ref, ref * (1 - M.BELOW))
  end
  return flags
end

local function se(std, n)
  if type(std) ~= "number" or type(n) ~= "number" or n < 1 then return 0 end
  return std / sqrt(n)
end

-- the FSR's noise: {noise (two standard errors of the FSR), within_noise}. The gap t_i - t_next
-- and the difference t_i - t carry the calibration's and the runs' standard errors; the FSR is
-- noise when either is within two of its standard errors.
function M.fsr_noise(ref_i, ref_next, times, fsr)
  local gap = ref_i.mean_ms - ref_next.mean_ms
  local se_i, se_next = se(ref_i.std_ms, ref_i.runs), se(ref_next.std_ms, ref_next.runs)
  local se_t = se(times.std, #(times.values or {}))
  local se_gap, se_diff = sqrt(se_i ^ 2 + se_next ^ 2), sqrt(se_i ^ 2 + se_t ^ 2)
  local noise = gap ~= 0 and 2 * sqrt(se_diff ^ 2 + ((fsr or 0) * se_gap) ^ 2) / abs(gap) or math.huge
  local within = abs(gap) <= 2 * se_gap or abs(ref_i.mean_ms - times.mean) <= 2 * se_diff
  return {noise = noise, within_noise = within}
end

return M
