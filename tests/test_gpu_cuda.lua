-- test_gpu_cuda.lua: speedrun.cuda from Lua: memory statistics, synchronize, and CUDA graphs of a
-- training step (tiny GPT, AdamW): the replayed graph gives the same loss sequence as eager
-- steps on the same batches (fed through fixed buffers updated with copy_), replays make no
-- driver allocation, and a step that cannot be captured falls back to eager execution.
-- Skips (exit 77) without a usable GPU.
local sr = speedrun
local F = sr.F
local T = require "speedrun.testing"
local cuda = require "speedrun.cuda"
local gpt = require "speedrun.gpt"

T.case("speedrun.cuda is speedrun.cuda", function() T.ok(sr.cuda == cuda) end)
local ok, why = cuda.available()
if not ok then
  T.case("no GPU: graph falls back to eager", function()
    local g = cuda.graph(function(x) return x + 1 end, sr.tensor {1, 2})
    T.eq(g.captured, false)
    T.ok(type(g.reason) == "string")
    T.close(g:replay(), {2, 3})
    local m = cuda.memory()
    T.eq(m.current, 0)
  end)
  T.skip("no usable GPU: " .. tostring(why))
end

T.case("memory statistics", function()
  cuda.synchronize()
  local m0 = cuda.memory()
  for _, k in ipairs {"current", "peak", "reserved", "driver_allocs"} do T.ok(math.type(m0[k]) == "integer", k) end
  local x = sr.zeros(1024, 1024, {device = "cuda"})   -- 4 MiB
  local m1 = cuda.memory()
  T.ok(m1.current >= m0.current + 4 * 1024 * 1024, "current grows")
  T.ok(m1.peak >= m1.current and m1.reserved >= m1.current, "peak and reserved >= current")
  x:close()
  cuda.reset_peak()
  local m2 = cuda.memory()
  T.eq(m2.peak, m2.current, "peak after reset_peak")
end)

local cfg = {vocab_size = 67, block_size = 32, n_layer = 2, n_head = 2, n_embd = 64}
local B, Tn, K = 4, 32, 6
local batches = {}
for i = 1, K do batches[i] = {sr.randint(0, cfg.vocab_size, {B, Tn}), sr.randint(0, cfg.vocab_size, {B, Tn})} end

local function setup()
  sr.manual_seed(7)
  local model = gpt.GPT(cfg):to("cuda")
  local opt = sr.optim.AdamW(model:parameters(), {lr = 3e-3, betas = {0.9, 0.95}, weight_decay = 0.1})
  local x = sr.zeros({B, Tn}, {dtype = "int32", device = "cuda"})
  local y = sr.zeros({B, Tn}, {dtype = "int32", device = "cuda"})
  local function step()
    opt:zero_grad()
    local _, loss = model(x, y)
    loss:backward()
    opt:step()
    return loss
  end
  return step, x, y, opt
end

T.case("graph replay == eager (tiny GPT + AdamW)", function()
  local step, x, y = setup()
  local eager = {}
  for i = 1, K do
    x:copy_(batches[i][1]); y:copy_(batches[i][2])
    eager[i] = step():item()
  end
  local step2, x2, y2, opt2 = setup()
  x2:copy_(batches[1][1]); y2:copy_(batches[1][2])
  local replayed = {step2():item()}                 -- one eager step creates the optimizer state
  local g <close> = cuda.graph(step2)
  T.ok(g.captured, "captured: " .. tostring(g.reason))
  cuda.synchronize()
  local allocs = cuda.memory().driver_allocs
  for i = 2, K do
    x2:copy_(batches[i][1]); y2:copy_(batches[i][2])
    local loss = g:replay()
    replayed[i] = loss:item()
  end
  T.eq(cuda.memory().driver_allocs, allocs, "driver allocations during replays")
  for i = 1, K do
    local e = math.abs(replayed[i] - eager[i]) / math.abs(eager[i])
    io.stdout:write(("step %d eager %.7f graph %.7f\n"):format(i, eager[i], replayed[i]))
    T.ok(e <= 1e-5, ("step %d: graph loss %.8f, eager %.8f"):format(i, replayed[i], eager[i]))
  end
  for i = 1, K do T.ok(eager[i] == eager[i] and eager[i] < 10, "finite, sane loss at step " .. i) end
  -- a changed lr reaches the captured step through the device-side schedule
  opt2:set_lr_multiplier(0.5)
  T.close(opt2.groups[1].sched:to("cpu"):tolist(), {1.5e-3, K}, 1e-6)
end)

T.case("uncapturable step falls back to eager", function()
  local x = sr.ones(8, {device = "cuda"})
  local calls = 0
  local g = cuda.graph(function() calls = calls + 1; return (x * 2):sum():item() end)
  T.eq(g.captured, false)
  T.ok(g.reason:find("capture", 1, true), "reason: " .. tostring(g.reason))
  T.eq(g:replay(), 16)
  T.eq(calls, 2)
  g:free()
  T.ok(not cuda.capturing())
  local y = (x + 1):sum():item()                    -- the stream works after the failed capture
  T.eq(y, 16)
end)

T.done()
