-- speedrun.harness.engine: the engine's fingerprint, a SHA-256 over the sources of everything that
-- sets a recipe's speed (host/ and kernels/ C and CUDA, the Lua library lua/speedrun/) in the
-- checkout the binary runs from. Calibration entries and scores carry it (`software.engine`);
-- `score` notes when its references were timed by another engine build, whose times need not be
-- this build's (an engine made faster since would show as the agent's speed-up).
local H = require "speedrun.harness_core"

local M = {}

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
