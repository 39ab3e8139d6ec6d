-- test_gpu_lt_algo.lua: cuBLASLt's algorithm choices kept on disk (host/cuda/lt_algo.c). A run
-- asks the heuristic for each new GEMM plan and writes the answers into the kernel cache; the
-- next run takes them from there (none asked) and computes the same results bit for bit; a file
-- of junk or a torn record is ignored (the heuristic asked again, the same results), and
-- SPEEDRUN_GEMM_CACHE=0 turns the file off. The algorithms chosen by timing (kernels/matmul.cu,
-- SR_GEMM_TUNE, on by default) are kept there too: a warm run times nothing, writes nothing and
-- computes the cold run's results bit for bit. Each run is its own process (the in-memory plan
-- cache would answer otherwise). Skips (exit 77) without a usable GPU.
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local cuda = require "speedrun.cuda"

local ok, why = cuda.available()
if not ok then T.skip("no usable GPU: " .. tostring(why)) end

local sh = T.shell_quote
local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/gpu-lt-algo"
local cache = tmp .. "/cache"
os.execute("rm -rf " .. sh(tmp))
H.mkdir(tmp)

-- a child: GEMMs of several shapes and dtypes (plain, batched, transposed, f32, bf16 -> f32,
-- FP8), then one line "stored asked sum1 sum2 ..." (sums of the results, as exact decimals)
local script = tmp .. "/gemms.lua"
T.write(script, [[
local sr = require "speedrun"
local cuda = require "speedrun.cuda"
local F = sr.F
sr.manual_seed(20261204)   -- the same values in every process
local function det(dtype, ...) return sr.randn(...):to("cuda", dtype or "bfloat16") end
local outs = {}
local a, b = det(nil, 64, 96), det(nil, 96, 80)
outs[#outs + 1] = a:matmul(b)
outs[#outs + 1] = det(nil, 96, 64):transpose(1, 2):matmul(b)
outs[#outs + 1] = det(nil, 4, 32, 48):matmul(det(nil, 4, 48, 16))
outs[#outs + 1] = det("float32", 64, 96):matmul(det("float32", 96, 80))
outs[#outs + 1] = F.linear(det(nil, 128, 256), det(nil, 192, 256))
local okf8 = pcall(function()
  local x = F.to_fp8(sr.randn(64, 128), "e4m3", 4):to("cuda")
  local w = F.to_fp8(sr.randn(96, 128), "e4m3", 4):to("cuda")
  outs[#outs + 1] = F.scaled_mm(x, w:transpose(1, 2), {scale_a = 0.25, scale_b = 0.25, out_dtype = "bfloat16"})
end)
local st = cuda.setup_stats()
local sums = {}
for i, o in ipairs(outs) do sums[i] = string.format("%.17g", o:to("cpu", "float64"):sum():item()) end
print(string.format("RESULT %d %d %s %s", st.gemm_algos_stored, st.gemm_algos_asked, okf8 and "fp8" or "nofp8",
  table.concat(sums, " ")))
]])

-- a child run under env (the heuristic's answers alone unless env says otherwise) with kernel cache dir
local function child(env, dir)
  local out = tmp .. "/out.txt"
  env = env or "SR_GEMM_TUNE=0"
  os.execute(env .. " SPEEDRUN_KERNEL_CACHE=" .. sh(dir or cache) .. " " .. sh(exe) .. " run " .. sh(script) .. " > " .. sh(out) .. " 2>&1")
  local text = T.read(out) or ""
  local stored, asked, f8, sums = text:match("RESULT (%d+) (%d+) (%S+) ([^\n]*)")
  T.ok(stored, "the child's result line\n" .. text)
  return tonumber(stored), tonumber(asked), sums, f8
end

local function algo_files(dir)
  local p = io.popen("ls " .. sh(dir or cache) .. "/gemm-*.algos 2>/dev/null")
  local files = {}
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  return files
end

local plain_size   -- the first case's file: the heuristic's answers alone

T.case("a cold cache asks the heuristic and writes the answers; a warm one is read, the same results", function()
  local s1, a1, sums1, f8 = child()
  T.eq(s1, 0, "nothing stored yet")
  T.ok(a1 >= 5, "every new plan asked the heuristic: " .. a1 .. " (" .. f8 .. ")")
  local files = algo_files()
  T.eq(#files, 1, "one file for this library, device and workspace")
  local size = #T.read(files[1])
  plain_size = size
  T.ok(size > 0 and size % a1 == 0, "whole records, one per answer: " .. size .. " bytes for " .. a1)
  local s2, a2, sums2 = child()
  T.eq(a2, 0, "the warm run asked nothing")
  T.eq(s2, a1, "every plan's algorithm from the file")
  T.eq(sums2, sums1, "bit for bit the same results")
end)

T.case("junk and torn records are ignored; SPEEDRUN_GEMM_CACHE=0 turns the file off", function()
  local file = algo_files()[1]
  local good = T.read(file)
  local _, asked0, sums0 = child("SR_GEMM_TUNE=0 SPEEDRUN_GEMM_CACHE=0")
  T.ok(asked0 > 0, "off: the heuristic is asked")
  T.eq(#T.read(file), #good, "off: nothing written")
  T.write(file, string.rep("\x5a", #good))   -- the same size, every record's checksum broken
  local s, a, sums = child()
  T.eq(s, 0, "no junk record taken") T.eq(a, asked0) T.eq(sums, sums0, "the same results")
  T.write(file, good .. good:sub(1, 100))    -- a torn record at the end
  s, a, sums = child()
  T.eq(a, 0, "the whole records still serve") T.eq(sums, sums0)
end)

T.case("the timed choices are remembered: a warm run times nothing and computes the same bits", function()
  local dir = tmp .. "/tuned"
  local s1, a1, sums1 = child("SR_GEMM_TUNE=1", dir)
  T.eq(s1, 0, "nothing stored yet") T.ok(a1 >= 5, "every new plan asked the heuristic: " .. a1)
  local files = algo_files(dir)
  T.eq(#files, 1, "one file")
  local size = #T.read(files[1])
  T.ok(size > plain_size, "the timed choices stored beside the heuristic's answers: " .. size .. " > " .. plain_size .. " bytes")
  local s2, a2, sums2 = child("SR_GEMM_TUNE=1", dir)
  T.eq(a2, 0, "the warm run asked nothing") T.eq(s2, a1)
  T.eq(#T.read(files[1]), size, "the warm run timed nothing new (nothing written)")
  T.eq(sums2, sums1, "bit for bit the cold run's results")
end)

T.done()
