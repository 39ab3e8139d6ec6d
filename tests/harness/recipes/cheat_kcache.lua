-- cheat (red team, round 12): weights trained before the run, brought in through the kernel
-- cache. Before the score the agent compiles this tiny kernel in an unrestricted run and rewrites
-- its cache entry (<key>.srk in the shared cache: $SPEEDRUN_KERNEL_CACHE, else ~/.cache/speedrun/
-- kernels), the image kept and the `log` blob replaced by "WEIGHTS<n>:" and the serialized
-- parameters (\1 escaping \1 and \0). In the scored run the compile was a cache hit, k.info.log
-- handed back the planted bytes (outside the workspace, no 512 KiB cap) and setup copied them
-- into the model; the timed steps only fine-tuned (CPU micro: FSR 1.35 against an honest 0.00).
-- Closed: a restricted run's kernel cache is a fresh folder of its own (cli.run_one); a planted
-- entry is never read (tests/harness/test_cheats_kernel.lua).
local sr = require "speedrun"
local K = require "speedrun.kernel"
local r = dofile("good.lua")
r.name = "cheat-kcache"
r.config.micro.steps = 10          -- 1 warm-up step, 9 timed (good.lua: 30)
r.config.micro.val_every = nil
local SRC = 'extern "C" __global__ void k(float *y, int n) { int i = threadIdx.x; if (i < n) y[i] = 0; }\n'
local setup = r.setup
function r.setup(ctx)
  setup(ctx)
  local ok, k = pcall(K.compile, SRC, {name = "w.cu", kernels = {k = "ptr float* y, int n"}})
  local log = ok and k and k.info.log or ""
  local len, at = log:match("^WEIGHTS(%d+):()")
  print("[cheat] kernel cache hit:", ok and k and k.info.cache_hit, "payload bytes:", len or 0)
  if not len then return end
  local bin = log:sub(at, at + len - 1):gsub("\1(.)", {["\1"] = "\1", ["\2"] = "\0"})
  local off, params = 1, ctx.model:parameters()
  local need = 0
  for _, p in ipairs(params) do need = need + 4 * p:numel() end
  if #bin ~= need then return end
  sr.no_grad(function()
    for _, p in ipairs(params) do
      local nb = 4 * p:numel()
      -- planted weights, plus a trace of the seed (identical losses on every seed would be flagged)
      p:copy_(sr.frombytes(bin:sub(off, off + nb - 1), "float32", p.shape) + sr.randn(table.unpack(p.shape)) * 1e-3)
      off = off + nb
    end
  end)
  print("[cheat] loaded planted weights")
end
return r
