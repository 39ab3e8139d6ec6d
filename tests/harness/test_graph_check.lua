-- The CUDA graph's verification rule (harness/graph.lua M.disagreement): a replayed step must
-- give the eager step's loss from the same state, and the same loss on the batch after its
-- update. A fused graph (the step compiler's kernels round once where eager rounds each bf16
-- intermediate) gets a looser bound on the step's loss only; runs on the CPU (no graph needed).
local T = require "speedrun.testing"
local graph = require "speedrun.harness.graph"
local dis = graph.disagreement

T.case("graph check: the loss bound, unfused and fused; the update probe bound for both", function()
  local l = 6.8
  -- an unfused graph replays the same kernels: 1e-5 relative (of max(1, |loss|))
  T.eq(dis(l, 5.0, l, 5.0, false), nil, "identical")
  T.eq(dis(l * (1 + 0.5e-5), 5.0, l, 5.0, false), nil, "within 1e-5")
  T.ok(dis(l * (1 + 3e-5), 5.0, l, 5.0, false):find("replayed loss", 1, true), "3e-5 off: refused unfused")
  -- fused: the rounding differences measured on an H200 reach 1e-5; allowed up to 1e-4
  T.eq(dis(l * (1 + 3e-5), 5.0, l, 5.0, true), nil, "3e-5 off: accepted fused")
  T.ok(dis(l * (1 + 3e-4), 5.0, l, 5.0, true):find("replayed loss", 1, true), "3e-4 off: refused even fused")
  T.ok(dis(l * 1.01, 5.0, l, 5.0, true), "a wrong batch (1 % off) is refused")
  -- the probe after the update keeps its bound, fused or not (a missed or partial update)
  for _, fused in ipairs {false, true} do
    T.eq(dis(l, 5.0 * (1 + 5e-5), l, 5.0, fused), nil)
    T.ok(dis(l, 5.0 * (1 + 5e-4), l, 5.0, fused):find("after the replayed update", 1, true), "probe 5e-4 off")
    T.ok(dis(l, 0 / 0, l, 5.0, fused):find("not finite", 1, true), "NaN probe")
  end
  T.eq(dis(nil, 5.0, nil, 5.0, true), nil, "a step that returns no loss: the probe decides")
end)

T.done()
