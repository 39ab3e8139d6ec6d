-- Cheat class 8 of issue 14: agent kernels under score. A restricted run's compile may read only
-- what the recipe may read: includes of the data (relative, absolute, through a macro, a spliced
-- or digraph directive), a source outside the workspace, -I or --pre-include options pointing
-- outside, a cache_dir outside the output folder and the raw C module are each rejected, even when
-- the recipe catches the error; an honest kernel (the engine's header and a workspace header)
-- stays valid. The policy runs before the compiler, so this holds without a GPU or NVRTC.
-- Round 19: an agent kernel launched inside eval (native code that could keep or read any memory
-- outside the tensors the checks see) is rejected before it reaches the GPU; K.op runs its reference
-- there instead (K.eval_refuses_kernels() says when).
local T = require "speedrun.testing"

local W = T.workspace("cheats-kernel", {"good", "cheat_kcache"})
local tmp, ws = W.tmp, W.ws
local write = T.write
write(ws .. "/helper.cuh", "#define SCALE 2.0f\n")
write(tmp .. "/outside.cu", "// a kernel source outside the workspace\n")

-- a recipe: good.lua whose setup first compiles a kernel (error caught by the recipe)
local function recipe(name, call)
  write(ws .. "/" .. name .. ".lua", ([[
local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  pcall(function() %s end)
  setup(ctx)
end
return r
]]):format(call))
end

local SIG = '{kernels = {k = "ptr float* y, int n"}}'
local function source(text) return ("speedrun.kernel.compile(%q, %s)"):format(text, SIG) end
local KERNEL = 'SR_KERNEL void k(float *y, int n) { int64_t i = sr_tid(); if (i < n) y[i] = SCALE; }\n'

recipe("k_honest", source('#include "speedrun_kernel.cuh"\n#include <cuda_bf16.h>\n#include "helper.cuh"\n' .. KERNEL))
recipe("k_data", source('#include "data/syn_val_000000.bin"\n' .. KERNEL))
recipe("k_absolute", source('#include "' .. ws .. '/data/syn_val_000000.bin"\n' .. KERNEL))
recipe("k_dotdot", source('#include "../outside.cu"\n' .. KERNEL))
recipe("k_macro", source('#define F "data/syn_val_000000.bin"\n#include F\n' .. KERNEL))
recipe("k_spliced", source('# /* a comment\n*/ include \\\n"data/syn_val_000000.bin"\n' .. KERNEL))
recipe("k_digraph", source('%:include "data/syn_val_000000.bin"\n' .. KERNEL))
recipe("k_path", ("speedrun.kernel.compile(%q, %s)"):format(tmp .. "/outside.cu", SIG))
recipe("k_idir", ('speedrun.kernel.compile(%q, {kernels = {k = "ptr float* y, int n"}, options = {"-I%s/data"}})')
                 :format('#include <syn_val_000000.bin>\n' .. KERNEL, ws))
recipe("k_preinclude", ('speedrun.kernel.compile(%q, {kernels = {k = "ptr float* y, int n"}, options = {%q}})')
                       :format(KERNEL, "--pre-include=" .. ws .. "/data/syn_val_000000.bin"))
recipe("k_cache", ('speedrun.kernel.compile(%q, {kernels = {k = "ptr float* y, int n"}, cache_dir = %q})')
                  :format(KERNEL, ws .. "/cache"))
recipe("k_core", 'require("speedrun.kernel_core")')
-- round 16: a path followed by a NUL byte: no ".cu" ending for the policy (an in-memory source
-- without includes), a path to a file outside the workspace for the C compile, which stops at the
-- NUL (an uncapped file of weights as CUDA literals, its own includes never checked)
recipe("k_nul", ("speedrun.kernel.compile(%q, %s)"):format(tmp .. "/outside.cu\0", SIG))
recipe("k_optnumber", ('speedrun.kernel.compile(%q, {kernels = {k = "ptr float* y, int n"}, options = {123, %q}})')
                      :format(KERNEL, "--pre-include=" .. ws .. "/data/syn_val_000000.bin"))
recipe("k_name", ('speedrun.kernel.compile(%q, {kernels = {k = "ptr float* y, int n"}, name = %q})')
                 :format('#include "syn_val_000000.bin"\n' .. KERNEL, ws .. "/data/k.cu"))

-- round 19: a kernel compiled in setup, launched inside eval (the error caught by the recipe)
write(ws .. "/k_evallaunch.lua", ([[
local K = require "speedrun.kernel"
local r = dofile("good.lua")
local setup, eval = r.setup, r.eval
function r.setup(ctx)
  setup(ctx)
  ctx.k = K.compile(%q, %s)
  print("compiled: " .. tostring(ctx.k ~= nil))
end
function r.eval(ctx, x)
  if ctx.k then pcall(ctx.k.k, {grid = 1, block = 32, args = {x, 0}}) end
  return eval(ctx, x)
end
return r
]]):format('#include "speedrun_kernel.cuh"\n#include "helper.cuh"\n' .. KERNEL, SIG))
-- an honest recipe that asks where kernels may run: not in eval under score, elsewhere yes
write(ws .. "/k_evalflag.lua", [[
local K = require "speedrun.kernel"
local r = dofile("good.lua")
local setup, eval = r.setup, r.eval
function r.setup(ctx)
  assert(K.eval_refuses_kernels() == false, "setup: kernels may run")
  setup(ctx)
end
function r.eval(ctx, x)
  assert(K.eval_refuses_kernels() == true, "eval under score: kernels refused")
  return eval(ctx, x)
end
return r
]])


local train, rejected = W.restricted, W.rejected

T.case("honest control: the engine's header, a toolkit header and a workspace header -> valid", function()
  local r, text = train("k_honest")
  T.eq(r.status, "valid", text)
end)

T.case("including the validation shard (relative) -> rejected", function()
  rejected("k_data", "off limits")
end)

T.case("including by an absolute name -> rejected", function()
  rejected("k_absolute", "absolute and '%.%.' names")
end)

T.case("including ../ outside the workspace -> rejected", function()
  rejected("k_dotdot", "absolute and '%.%.' names")
end)

T.case("an include computed by a macro -> rejected", function()
  rejected("k_macro", "must name a file")
end)

T.case("a directive spread by a comment and a line splice is still seen -> rejected", function()
  rejected("k_spliced", "off limits")
end)

T.case("a digraph directive (%:include) of the data -> rejected", function()
  rejected("k_digraph", "off limits")
end)

T.case("a kernel source outside the workspace -> rejected", function()
  rejected("k_path", "may read only inside the workspace")
end)

T.case("-I pointing into the data -> rejected", function()
  rejected("k_idir", "off limits")
end)

T.case("--pre-include of a data file -> rejected", function()
  rejected("k_preinclude", "option %-%-pre%-include")
end)

T.case("a cache_dir outside the output folder -> rejected", function()
  rejected("k_cache", "writing .*cache")
end)

T.case("an option list with a number first (compile takes it; the check once stopped there) -> rejected", function()
  rejected("k_optnumber", "option 123 is not allowed")
end)

T.case("a source name in the data folder (its folder becomes an include folder) -> rejected", function()
  rejected("k_name", "a file name, not a path")
end)

T.case("round 16: a source path with a NUL byte after it (the C side opens the path) -> rejected", function()
  rejected("k_nul", "NUL byte")
end)

T.case("round 19: an agent kernel launched inside eval -> rejected (before the GPU); K.eval_refuses_kernels says so", function()
  local r, text = train("k_evalflag")
  T.eq(r.status, "valid", text)
  r, text = train("k_evallaunch")
  if not text:find("compiled: true", 1, true) then T.skip("no NVRTC in this build: nothing to launch\n" .. text) end
  T.eq(r.status, "rejected", text)
  T.ok(tostring(r.failure and r.failure.message):find("agent kernel's launch", 1, true), text)
end)

T.case("round 19: on a GPU that reaches the process's memory (HMM, ATS) no agent kernel compiles under score", function()
  -- SPEEDRUN_HOST_REACH=1 stands for such a GPU (configuration a score keeps: it can only refuse more);
  -- the honest kernel of the control above is refused, and a recipe without kernels still passes
  local function reach_run(recipe)
    local dir = W.tmp .. "/run-reach-" .. recipe
    os.execute("rm -rf " .. T.shell_quote(dir))
    os.execute("SPEEDRUN_HOST_REACH=1 " .. T.shell_quote(arg[-1]) .. " train " .. T.shell_quote(ws .. "/" .. recipe .. ".lua")
               .. " --scale micro --restricted --device cpu --threads 1 " .. W.data .. " --out " .. T.shell_quote(dir)
               .. " > " .. T.shell_quote(dir .. ".txt") .. " 2>&1")
    return require("speedrun.json").decode(T.read(dir .. "/results.json")), T.read(dir .. ".txt")
  end
  local r, log = reach_run("k_honest")
  T.eq(r.status, "rejected", log)
  T.ok(tostring(r.failure and r.failure.message):find("reaches the process's memory", 1, true), log)
  r, log = reach_run("good")
  T.eq(r.status, "valid", "no kernel, nothing refused\n" .. log)
end)

T.case("the raw C module speedrun.kernel_core -> rejected", function()
  rejected("k_core", "speedrun%.kernel_core")
end)

-- round 12: an entry planted in the shared kernel cache by an unrestricted run (its log blob
-- rewritten) reached a restricted run's compile as a cache hit: weights from outside the workspace
T.case("cheat_kcache: a planted cache entry reaches an unrestricted run, never a restricted one", function()
  local sh, exe = T.shell_quote, arg[-1]
  local shared = tmp .. "/shared-kernel-cache"
  os.execute("rm -rf " .. sh(shared))
  local function with_cache(args)   -- the agent's shell: the shared cache in the environment
    local _, how, code = os.execute("SPEEDRUN_KERNEL_CACHE=" .. sh(shared) .. " " .. sh(exe) .. " " .. args .. " > "
                                    .. sh(tmp .. "/kc.txt") .. " 2>&1")
    local out = io.open(tmp .. "/kc.txt"):read("a")
    return how == "exit" and code or 128 + code, out
  end
  write(tmp .. "/plant.lua", [[
local K = require "speedrun.kernel"
local SRC = 'extern "C" __global__ void k(float *y, int n) { int i = threadIdx.x; if (i < n) y[i] = 0; }\n'
local ok, k = pcall(K.compile, SRC, {name = "w.cu", kernels = {k = "ptr float* y, int n"}})
if not ok or not k or not k.info.cache_path then print("no kernel cache: " .. tostring(k)) os.exit(3) end
local f = assert(io.open(k.info.cache_path, "rb")); local srk = f:read("a"); f:close()
local a, b, len = srk:find("\nlog (%d+)\n")
assert(a, "no log blob in " .. k.info.cache_path)
local payload = "WEIGHTS5:abcde"   -- the log blob replaced (its length field too)
local new = srk:sub(1, a) .. "log " .. #payload .. "\n" .. payload .. srk:sub(b + tonumber(len) + 1)
f = assert(io.open(k.info.cache_path, "wb")); f:write(new); f:close()
print("planted " .. k.info.cache_path)
]])
  local code, out = with_cache("run " .. sh(tmp .. "/plant.lua"))
  if code == 3 then T.skip("no NVRTC kernel cache in this build: " .. out) end
  T.eq(code, 0, out)
  -- the control: the agent's own run reads the planted bytes
  local RUN = " --scale micro --device cpu --threads 1 " .. W.data
  code, out = with_cache("train " .. sh(ws .. "/cheat_kcache.lua") .. RUN .. " --out " .. sh(tmp .. "/kc-open"))
  T.ok(out:find("payload bytes:%s*5"), "an unrestricted run finds the planted entry\n" .. out)
  -- scored (restricted): a fresh cache of the run's own, the planted entry never read
  code, out = with_cache("train " .. sh(ws .. "/cheat_kcache.lua") .. RUN .. " --restricted --out " .. sh(tmp .. "/kc-restricted"))
  T.ok(out:find("cache hit:%s*false") and out:find("payload bytes:%s*0"), "a restricted run compiles afresh\n" .. out)
  local results = require("speedrun.json").decode(io.open(tmp .. "/kc-restricted/results.json"):read("a"))
  T.eq(results.status, "valid", out)
  -- the run's own caches: NVRTC's and the CUDA driver's JIT cache (round 13), made fresh
  local H = require "speedrun.harness_core"
  for _, c in ipairs {"kernel-cache", "cuda-cache"} do
    local st = H.stat(tmp .. "/kc-restricted/" .. c)
    T.ok(st and st.type == "dir", "the restricted run's " .. c)
  end
end)

T.done()
