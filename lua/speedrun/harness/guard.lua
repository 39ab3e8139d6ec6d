-- speedrun.harness.guard: what the parent checks and arranges before a restricted (score) run, so
-- that a recipe can neither reach earlier outputs nor the data through another name
-- (docs/harness.md "Threat model"):
--   * where outputs go: never inside the workspace (a later run could load them); the workspace's
--     own runs/ folder (where `speedrun train` writes) is denied to the recipe;
--   * identity, not paths: the files of the denied folders (the data, runs/) are known by device
--     and inode (H.stat); a workspace file with one of those identities (a hard link), a symlink
--     to one, any file with several names, or a folder that cannot be listed (its source files
--     uncounted) is refused before the run starts;
--   * a fresh scratch folder per run: the only place the recipe may write (ctx.out_dir); the
--     parent's own files (log.txt, recipe.log, job.json, results.json) lie next to it, out of reach.
local H = require "speedrun.harness_core"

local fmt = string.format
local M = {}

M.MAX_ENTRIES = 200000     -- files looked at per scan (a larger tree is refused, not skipped)
-- the workspace's source files (those a recipe may read: sandbox.SOURCE) together: the records'
-- recipes are 30-36 KB; a model's weights written as Lua literals are megabytes
M.MAX_SOURCE_BYTES = 512 * 1024
M.MAX_DEPTH = 32

local function inside(path, dir)
  return dir ~= nil and (path == dir or path:sub(1, #dir + 1) == dir .. "/")
end

-- walks root (lstat: links are not followed); fn(path, st) for every entry; false, msg past the limits,
-- and with strict at a folder that cannot be listed (else it is passed over)
local function walk(root, fn, strict)
  local count = 0
  local function go(dir, depth)
    if depth > M.MAX_DEPTH then return false, fmt("%s is nested more than %d folders deep", dir, M.MAX_DEPTH) end
    local names, err = H.listdir(dir)
    if not names and strict then return false, M.unlisted(dir, err) end
    for _, name in ipairs(names or {}) do
      local path = dir .. "/" .. name
      local st = H.stat(path, true)
      count = count + 1
      if count > M.MAX_ENTRIES then return false, fmt("%s holds more than %d files", root, M.MAX_ENTRIES) end
      if st then
        local descend, err = fn(path, st)
        if err then return false, err end
        if descend and st.type == "dir" then
          local ok, msg = go(path, depth + 1)
          if not ok then return false, msg end
        end
      end
    end
    return true
  end
  return go(root, 0)
end

-- why a workspace folder that cannot be listed is refused: a folder the recipe may enter but not
-- list (chmod 111, as a non-root scorer) hid its source files from the size cap (round 16)
function M.unlisted(dir, err)
  return fmt("%s cannot be listed (%s): a workspace's folders must be readable, so that its source files can be counted",
             dir, tostring(err))
end

-- the identities (id -> path) of every file under the folders dirs (canonical paths)
function M.identities(dirs)
  local ids = {}
  for _, d in ipairs(dirs) do
    if H.stat(d) then
      walk(d, function(path, st)
        if st.type == "file" then ids[st.id] = path end
        return true
      end)
    end
  end
  return ids
end

-- the first reason the workspace ws may not be scored (nil when none): a hard link or symlink to
-- a file of the denied folders deny (by identity), a file with several names, source files over
-- M.MAX_SOURCE_BYTES together, a folder that cannot be listed
function M.check_workspace(ws, deny)
  local ids = M.identities(deny)
  local problem, source_bytes = nil, 0
  local SOURCE = require("speedrun.harness.sandbox").SOURCE
  local ok, err = walk(ws, function(path, st)
    local real = H.realpath(path)
    for _, d in ipairs(deny) do if inside(real or path, d) then return false end end   -- denied by path
    if st.type == "link" then
      local t = H.stat(path)
      if t and ids[t.id] then problem = fmt("%s is a symlink to %s, a file the recipe may not read", path, ids[t.id]) end
    elseif st.type == "file" then
      if ids[st.id] then
        problem = fmt("%s is a hard link to %s, a file the recipe may not read", path, ids[st.id])
      elseif st.nlink > 1 then
        problem = fmt("%s is a hard link (%d names): a workspace may not hold hard links", path, st.nlink)
      elseif SOURCE[path:match("%.(%w+)$") or ""] then
        source_bytes = source_bytes + st.size
        if source_bytes > M.MAX_SOURCE_BYTES then
          problem = fmt("the workspace's source files (.lua, .cu, ...) exceed %d KiB (at %s): a recipe is code; "
            .. "weights written into it are not allowed", M.MAX_SOURCE_BYTES // 1024, path)
        end
      end
    end
    if problem then return false, problem end
    return true
  end, true)
  if not ok then return err end
  return problem
end

-- removes the tree at path (files and folders; links are removed, not followed)
function M.remove_tree(path)
  local st = H.stat(path, true)
  if not st then return true end
  if st.type == "dir" then
    for _, name in ipairs(H.listdir(path) or {}) do M.remove_tree(path .. "/" .. name) end
  end
  return os.remove(path)
end

-- a fresh, empty folder (what was there is removed); an error when something there cannot be
-- removed or the new folder is not empty: a scratch folder or kernel cache planted at a run's
-- predictable path and made impossible to empty (chattr +i) kept its files for the recipe
-- (red team round 13, cheat_stickyout)
function M.fresh_dir(path)
  M.remove_tree(path)
  if H.stat(path, true) then
    error(path .. " cannot be emptied (something there could not be removed): a run's folders must be fresh", 0)
  end
  local ok, err = H.mkdir(path)
  if not ok then error("cannot create " .. path .. ": " .. tostring(err), 0) end
  local left = H.listdir(path)
  if not left or #left > 0 then error(path .. " is not empty after it was made: a run's folders must be fresh", 0) end
  return H.realpath(path) or path
end

-- nil when out (an output folder, maybe not created yet) lies outside the workspace ws, else why not
function M.outside_workspace(out, ws)
  local probe = out
  while probe and not H.realpath(probe) do probe = probe:match("^(.*)/[^/]*$") end
  local real = probe and ((H.realpath(probe) or probe) .. out:sub(#probe + 1)) or out
  if inside(real, H.realpath(ws) or ws) then
    return fmt("the output folder %s is inside the workspace %s: a recipe could read an earlier run's outputs "
               .. "(use an --out outside it)", out, ws)
  end
end

-- where restricted runs go by default: $SPEEDRUN_RUNS_DIR, else <checkout>/runs
function M.runs_root()
  return os.getenv("SPEEDRUN_RUNS_DIR") or (H.source_dir() .. "/runs")
end

return M
