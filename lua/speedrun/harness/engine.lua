-- speedrun.harness.engine: the engine's fingerprint, a SHA-256 over the sources of everything that
-- sets a recipe's speed (host/ and kernels/ C and CUDA, the Lua library lua/speedrun/) in the
-- checkout the binary runs from. Calibration entries and scores carry it (`software.engine`);
-- `score` notes when its references were timed by another engine build, whose times need not be
-- this build's (an engine made faster since would show as the agent's speed-up).
local H = require "speedrun.harness_core"

local M = {}

-- the rule by which the harness's clock counts a train time (harness/steps.lua), recorded with
-- every calibration entry and score (`software.clock`): times counted by different rules are not
-- comparable, whatever the engine. 1: the warm-up's time beyond its allowance less its NVRTC
-- compiles; 2 (2026-12-06): less the engine's setup in it too (cudaMalloc, GEMM plans, module
-- loads, graph builds)
M.CLOCK = 2

-- the clock rule an entry's (or a score's) times were counted by: its software.clock; 1 for one
-- that records its software but no rule (it predates the rule's record); nil when it records no
-- software at all (unknown)
function M.clock_of(e)
  local s = type(e) == "table" and e.software
  if type(s) ~= "table" then return nil end
  return type(s.clock) == "number" and s.clock or 1
end

M.ROOTS = {"host", "kernels", "lua/speedrun"}
local SUFFIX = {c = true, h = true, cu = true, cuh = true, lua = true}

-- every source file below root/dir, relative paths, into out
local function walk(root, dir, out)
  local names = H.listdir(root .. "/" .. dir)
  if not names then return end
  for _, name in ipairs(names) do
    local rel = dir .. "/" .. name
    local st = H.stat(root .. "/" .. rel)
    if st and st.type == "dir" then walk(root, rel, out)
    elseif st and SUFFIX[name:match("%.(%w+)$") or ""] then out[#out + 1] = rel end
  end
end

local cached = {}

-- the fingerprint of the sources under root (default: the checkout), 16 hex digits; nil, why when
-- they cannot be read
function M.id(root)
  root = root or H.source_dir()
  if cached[root] then return cached[root] end
  local files = {}
  for _, dir in ipairs(M.ROOTS) do walk(root, dir, files) end
  if #files == 0 then return nil, "no engine sources under " .. root end
  table.sort(files)
  local parts = {}
  for i, rel in ipairs(files) do
    local f = io.open(root .. "/" .. rel, "rb")
    if not f then return nil, "cannot read " .. root .. "/" .. rel end
    parts[i] = rel .. "\0" .. H.sha256(f:read("a")) .. "\n"
    f:close()
  end
  cached[root] = H.sha256(table.concat(parts)):sub(1, 16)
  return cached[root]
end

return M
