-- bench/host_reach.lua: can an agent kernel read the host process's pageable memory on this GPU?
-- (HMM on x86 with NVIDIA's open kernel modules, ATS on Grace Hopper.) A kernel is handed the host
-- address of a Lua string (string.format "%p", which any recipe can call) as a uint64_t argument
-- and copies the bytes after it; the script prints what came back. Where it reads them, native
-- agent code reaches everything the child process holds in memory, not only device memory: the
-- harness must keep what eval may not see (later validation tokens) out of the child's address
-- space, not only off the device (docs/harness.md, threat model). A fault means it cannot.
--   speedrun run bench/host_reach.lua
local K = require "speedrun.kernel"
local src = [[
#include "speedrun_kernel.cuh"
SR_KERNEL void peek(int *out, uint64_t addr, int n) {
  const unsigned char *p = (const unsigned char *)addr;
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = p[i];
}
]]
local k, log = K.compile(src, {name = "host_reach.cu", kernels = {peek = "ptr int* out, uint64_t addr, int n"}})
if not k then error(log) end
local secret = ("validation tokens " .. string.rep("0123456789", 8)):sub(1, 96)
local addr = tonumber(string.format("%p", secret))
if not addr then error("string.format('%p') gave no address: " .. string.format("%p", secret)) end
print(string.format("host address of a Lua string: 0x%x (%d bytes)", addr, #secret))
-- the string's bytes follow its header (struct TString, 24 bytes in Lua 5.4 on 64-bit): read a
-- window from the address and look for them
local n = 256
local out = speedrun.zeros({n}, {dtype = "int32", device = "cuda"})
local ok, err = pcall(function()
  k.peek{grid = 1, block = 128, args = {out, addr, n}}
  speedrun.cuda.synchronize()
end)
if not ok then
  print("host memory NOT readable from a kernel: " .. tostring(err))
  return
end
local bytes = {}
for i, v in ipairs(out:to("cpu"):tolist()) do bytes[i] = string.char(v) end
local window = table.concat(bytes)
local at = window:find(secret, 1, true)
print(at and string.format("host memory READABLE from a kernel: the string found %d bytes after its address", at - 1)
        or "the kernel ran but the string's bytes were not in the window read (" .. window:sub(1, 48):gsub("%c", ".") .. ")")
