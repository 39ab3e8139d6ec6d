-- tasks/fidelity/ours.lua on the CPU at micro scale: `init` then `train` from a PyTorch-side
-- batches file for a bt-mode recipe (record 5: x, y [accum*B, T]) and seq-mode recipes (records 12,
-- 21: the flat concatenation of the windows, micro_batch = T), two steps of two micro-batches each;
-- the losses are finite and one per step, and other windows give another step-2 loss (step 1 can
-- be ln V whatever the data: zero-initialised heads).
local T = require "speedrun.testing"
local data = require "speedrun.data"
local json = require "speedrun.json"

local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/fidelity_feed"
local sh = T.shell_quote
os.execute("mkdir -p " .. sh(tmp))
assert(data.write_shard(tmp .. "/syn_train_000001.bin", T.token_stream(8192, 3)))

local function run(n, mb, Tn, positions, tag)
  local recipe = ("../tasks/record_%02d/recipe.lua"):format(n)
  local b = ("%s/b%d%s.json"):format(tmp, n, tag)
  T.write(b, json.encode({micro_batch = mb, T = Tn, accum = 2, steps = 2, positions = positions}))
  local init = ("%s/i%d.srw"):format(tmp, n)
  local out = ("%s/o%d%s.json"):format(tmp, n, tag)
  local cmd = ("%s run ../tasks/fidelity/ours.lua init %s %s --scale micro --device cpu >/dev/null && " ..
               "%s run ../tasks/fidelity/ours.lua train %s --weights %s --batches %s --train-files %s --out %s " ..
               "--scale micro --device cpu 2>/dev/null")
    :format(sh(exe), sh(recipe), sh(init), sh(exe), sh(recipe), sh(init), sh(b), sh(tmp .. "/syn_train_*.bin"), sh(out))
  T.ok(os.execute(cmd), "ours.lua failed: " .. cmd)
  return json.decode(T.read(out))
end

local cases = {{5, 2, 32}, {12, 1, 256}, {21, 1, 256}}
for _, c in ipairs(cases) do
  local n, mb, Tn = c[1], c[2], c[3]
  T.case(("record %d: ours.lua trains on the given windows"):format(n), function()
    local w = mb * Tn
    local fwd = run(n, mb, Tn, {{0, 0}, {0, w}, {0, 2 * w}, {0, 3 * w}}, "a")
    T.eq(#fwd.losses, 2, "one loss per step")
    for _, l in ipairs(fwd.losses) do T.ok(l == l and l > 0 and l < 20, "finite loss " .. tostring(l)) end
    T.eq(fwd.accum, 2)
    -- the harness's stepper ran the steps; on the CPU it stays eager and says why
    T.eq(fwd.cuda_graph.used, false)
    T.ok(tostring(fwd.cuda_graph.reason):find("the device is cpu", 1, true), tostring(fwd.cuda_graph.reason))
    T.eq(fwd.cuda_graph.eager_steps, 2, "both steps through the stepper")
    local other = run(n, mb, Tn, {{0, 4 * w}, {0, 5 * w}, {0, 6 * w}, {0, 7 * w}}, "b")
    T.ok(math.abs(other.losses[2] - fwd.losses[2]) > 1e-6, "other windows give another step-2 loss")
  end)
end

T.done()
