-- test_gpu_graph.lua: the trainer's automatic CUDA graphs (docs/harness.md "CUDA graphs").
-- `speedrun train` on cuda with --cuda-graph auto replays the step after the warm-up, and its
-- losses match an eager run (--cuda-graph off) step by step: a test recipe, the default recipe,
-- records 1 (clipping on the device), 4 (Muon with its lr in a device tensor), 5, and the
-- flat-sequence records 13, 15 and 20. Steps that cannot be replayed stay eager with the reason in
-- results.json: :item() in the step, the step number used in the step, a host value changing each
-- step, an opt-out, and a host value that changes late (found by an audit). Skips (exit 77)
-- without a usable GPU.
local sr = speedrun
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local data = require "speedrun.data"
local cuda = require "speedrun.cuda"

local ok, why = cuda.available()
if not ok then T.skip("no usable GPU: " .. tostring(why)) end

local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/gpu-graph"
H.mkdir(tmp)
H.mkdir(tmp .. "/data")
local stream = T.token_stream
assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", stream(2000000, 1)))
assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", stream(20000, 2)))
local sh = T.shell_quote
local DATA = "--train-files " .. sh(tmp .. "/data/syn_train_*.bin") .. " --val-files " .. sh(tmp .. "/data/syn_val_*.bin")

local function train(recipe, scale, extra, tag)
  local out = tmp .. "/run-" .. tag
  os.execute("rm -rf " .. sh(out))
  local cmd = sh(exe) .. " train " .. sh(recipe) .. " --scale " .. scale .. " --device cuda --steps 60 --target 99 "
              .. DATA .. " --out " .. sh(out) .. " " .. (extra or "") .. " > " .. sh(out .. ".txt") .. " 2>&1"
  os.execute(cmd)
  local text = io.open(out .. ".txt"):read("a")
  local f = io.open(out .. "/results.json")
  T.ok(f, "results.json for " .. tag .. "\n" .. text)
  local r = json.decode(f:read("a"))
  f:close()
  T.eq(r.status, "valid", tag .. ": " .. tostring(r.failure and r.failure.message) .. "\n" .. text)
  return r, out
end

local function same_losses(name, recipe, scale)
  T.case(name .. ": the replayed run gives the eager run's losses", function()
    local g, out = train(recipe, scale, "--cuda-graph auto", name .. "-graph")
    local e = train(recipe, scale, "--cuda-graph off", name .. "-eager")
    local cg = g.cuda_graph
    T.ok(cg.used, name .. ": graph not used: " .. tostring(cg.reason))
    T.eq(e.cuda_graph.used, false)
    T.ok(e.cuda_graph.reason:find("--cuda-graph off", 1, true))
    T.eq(cg.captured_at, 3, "captured after eager step 3 (its launches repeat step 2's)")
    T.ok(cg.replays >= 50, "replays " .. tostring(cg.replays))
    T.ok(cg.audits >= 1, "audits")
    T.eq(cg.reason, nil, "no reason when used throughout")
    T.ok(io.open(out .. "/log.txt"):read("a"):find("cuda_graph: replaying the step from step 5", 1, true), "logged")
    local worst = 0
    for i = 1, 60 do
      local a, b = g.curve.train[i].loss, e.curve.train[i].loss
      worst = math.max(worst, math.abs(a - b) / math.max(1, math.abs(b)))
    end
    io.stderr:write(("%s: verify loss diff %s, probe diff %.3g; %d replays; worst step loss diff %.3g; step_avg %.3f ms graph, %.3f ms eager\n"):format(
      name, tostring(cg.verify.loss_diff), cg.verify.probe_diff, cg.replays, worst, g.metrics.step_avg_ms, e.metrics.step_avg_ms))
    T.ok(worst <= 1e-3, name .. ": losses differ by " .. worst)
    T.ok(math.abs(g.metrics.val_loss - e.metrics.val_loss) <= 1e-3 * math.max(1, e.metrics.val_loss), "val loss")
  end)
end

same_losses("graphs", "harness/recipes/graphs.lua", "micro")
same_losses("default", "../tasks/default/recipe.lua", "micro")
same_losses("record_01", "../tasks/record_01/recipe.lua", "micro")
same_losses("record_04", "../tasks/record_04/recipe.lua", "micro")
same_losses("record_05", "../tasks/record_05/recipe.lua", "micro")
-- flat sequences (seq mode): the verification's probe evaluates a [T] batch as one row; the window
-- moves in a device tensor (13), kv lists built by argsort (15), long/short windows and FP8 (20)
same_losses("record_13", "../tasks/record_13/recipe.lua", "micro")
same_losses("record_15", "../tasks/record_15/recipe.lua", "micro")
same_losses("record_20", "../tasks/record_20/recipe.lua", "micro")

local function eager_because(scale, pattern)
  T.case("stays eager: " .. scale, function()
    local r, out = train("harness/recipes/graphs.lua", scale, "", scale)
    local cg = r.cuda_graph
    T.eq(cg.used, false)
    T.ok(tostring(cg.reason):find(pattern, 1, true), ("%s: reason %q should contain %q"):format(scale, tostring(cg.reason), pattern))
    T.eq(cg.replays, 0)
    T.ok(io.open(out .. "/log.txt"):read("a"):find("cuda_graph: eager", 1, true), "logged")
  end)
end
eager_because("item", "host<->device copy inside a CUDA graph capture")
eager_because("stepuse", "train_step used the step number")
eager_because("hostval", "kernel arguments changed between steps 4 and 5")
eager_because("optout", "recipe opts out")

T.case("an audit finds a host value that changed after the capture", function()
  local r = train("harness/recipes/graphs.lua", "late", "", "late")
  local cg = r.cuda_graph
  T.eq(cg.used, true)
  T.ok(cg.audit_failed, "audit_failed recorded")
  T.eq(cg.audit_failed.step, 54, "verified at step 4, audited 50 steps later")
  T.eq(cg.audit_failed.since, 5)
  T.ok(tostring(cg.reason):find("audit at step 54", 1, true), tostring(cg.reason))
end)

T.done()
