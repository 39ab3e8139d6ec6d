-- speedrun.agent.extcoder_tree: what an external coder did to a node's workspace (docs/agent.md
-- "External coders"). A snapshot of the workspace before the command (every directory and regular
-- file with its bytes; the top-level .git is left out), the differences of the tree after it
-- (added, modified, deleted, each with its type), the judgement of those differences (only
-- recipe.lua and new or changed .lua/.cu/.cuh files, and the directories holding them, may change;
-- a symbolic link is refused and named by where its realpath leads) and the restore of the
-- before-state, all or nothing. Listings of the node and run folders catch writes beside the workspace.
--   snapshot(root) -> snap | nil, err        diff(snap, root) -> changes
--   judge(changes, root) -> edits, problems   restore(snap, root) -> true | nil, err
--   listing(dir, skip) -> list                 outside(listing, dir, skip) -> new or changed names
local H = require "speedrun.harness_core"

local M = {}

M.EXTENSIONS = {lua = true, cu = true, cuh = true}

local sh = require("speedrun.util").shell_quote

local read = require("speedrun.util").read_file
local write = require("speedrun.util").write_file

-- every entry under root (lstat: links are not followed): rel -> {type, size}; the top-level .git skipped
local function walk(root)
  local out = {}
  local function scan(rel)
    local d = rel == "" and root or (root .. "/" .. rel)
    for _, name in ipairs(H.listdir(d) or {}) do
      local r = rel == "" and name or (rel .. "/" .. name)
      if not (rel == "" and name == ".git") then
        local st = H.stat(root .. "/" .. r, true)
        if st then
          out[r] = {type = st.type, size = st.size}
          if st.type == "dir" then scan(r) end
        end
      end
    end
  end
  scan("")
  return out
end

-- the before-state: directories and regular files only (the loop's workspaces hold nothing else)
function M.snapshot(root)
  local st = H.stat(root, true)
  if not st or st.type ~= "dir" then return nil, "workspace " .. tostring(root) .. " is not a directory" end
  local entries = walk(root)
  for rel, e in pairs(entries) do
    if e.type == "file" then
      e.content = read(root .. "/" .. rel)
      if not e.content then return nil, "cannot read " .. rel end
    elseif e.type ~= "dir" then
      return nil, ("the workspace already holds %s, which is neither a file nor a directory"):format(rel)
    end
  end
  return {root = root, real = H.realpath(root), entries = entries}
end

local function sorted_keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return k
end

-- the differences between snap and root now: a sorted list of {path, what, type, before_type}
function M.diff(snap, root)
  local changes = {}
  local st = H.stat(root, true)
  local after = (st and st.type == "dir") and walk(root) or {}
  if not st or st.type ~= "dir" then
    changes[#changes + 1] = {path = ".", what = "replaced", type = st and st.type or "missing"}
  end
  for _, rel in ipairs(sorted_keys(after)) do
    local a, b = after[rel], snap.entries[rel]
    if not b then changes[#changes + 1] = {path = rel, what = "added", type = a.type}
    elseif a.type ~= b.type then changes[#changes + 1] = {path = rel, what = "replaced", type = a.type, before_type = b.type}
    elseif a.type == "file" and (a.size ~= #b.content or read(root .. "/" .. rel) ~= b.content) then
      changes[#changes + 1] = {path = rel, what = "modified", type = "file"}
    end
  end
  for _, rel in ipairs(sorted_keys(snap.entries)) do
    if not after[rel] then changes[#changes + 1] = {path = rel, what = "deleted", type = snap.entries[rel].type} end
  end
  return changes
end

local function code_file(rel) return M.EXTENSIONS[rel:match("%.(%w+)$") or ""] == true end

local function inside(root, real) return real == root or real:sub(1, #root + 1) == root .. "/" end

-- why a change is refused (nil when it is allowed; directories are judged by what they hold)
local function refusal(c, root, real_root)
  if c.path == "." then return "the workspace itself was replaced (now " .. c.type .. ")" end
  if c.type == "link" then
    local real = H.realpath(root .. "/" .. c.path)
    if not real or not (real_root and inside(real_root, real)) then
      return ("%s: a symbolic link leading out of the workspace (to %s)"):format(c.path, tostring(real or "nowhere"))
    end
    return c.path .. ": a symbolic link (only regular files may be added)"
  end
  if c.what == "deleted" then return c.path .. ": deleted (files may be changed or added, not removed)" end
  if c.what == "replaced" then return ("%s: a %s replaced by a %s"):format(c.path, c.before_type, c.type) end
  if c.type == "dir" then return nil end
  if c.type ~= "file" then return ("%s: not a regular file (%s)"):format(c.path, c.type) end
  if not code_file(c.path) then return c.path .. ": only recipe.lua and .lua, .cu and .cuh files may change" end
  return nil
end

-- the changes judged: the edits ({path, kind = "modified"|"added"} for code files) and the problems
function M.judge(changes, root)
  local real_root = H.realpath(root)
  local edits, problems, dirs = {}, {}, {}
  for _, c in ipairs(changes) do
    local why = refusal(c, root, real_root)
    if why then problems[#problems + 1] = why
    elseif c.type == "dir" then dirs[#dirs + 1] = c.path
    else edits[#edits + 1] = {path = c.path, kind = c.what} end
  end
  for _, d in ipairs(dirs) do   -- a new directory must hold a new code file
    local used = false
    for _, e in ipairs(edits) do if e.path:sub(1, #d + 1) == d .. "/" then used = true break end end
    if not used then problems[#problems + 1] = d .. "/: a new directory with no code file in it" end
  end
  return edits, problems
end

local function depth(rel) return select(2, rel:gsub("/", "")) end

-- puts back the before-state: added entries removed, changed and deleted ones rewritten
function M.restore(snap, root)
  local st = H.stat(root, true)
  if not st or st.type ~= "dir" then
    os.execute("rm -rf " .. sh(root))
    H.mkdir(root)
  end
  local changes = M.diff(snap, root)
  table.sort(changes, function(a, b) return depth(a.path) > depth(b.path) end)
  for _, c in ipairs(changes) do
    if c.what == "added" or c.what == "replaced" then os.execute("rm -rf " .. sh(root .. "/" .. c.path)) end
  end
  table.sort(changes, function(a, b) return depth(a.path) < depth(b.path) end)
  for _, c in ipairs(changes) do
    local b = snap.entries[c.path]
    if b and b.type == "dir" then H.mkdir(root .. "/" .. c.path)
    elseif b then
      local ok, err = write(root .. "/" .. c.path, b.content)
      if not ok then return nil, "restore: " .. tostring(err) end
    end
  end
  local left = M.diff(snap, root)
  if #left > 0 then return nil, ("restore: %s still %s"):format(left[1].path, left[1].what) end
  return true
end

-- the top-level entries of dir (names in skip left out): name -> {type, size}
function M.listing(dir, skip)
  local out = {}
  for _, name in ipairs(H.listdir(dir) or {}) do
    if not (skip and skip[name]) then
      local st = H.stat(dir .. "/" .. name, true)
      if st then out[name] = {type = st.type, size = st.type == "file" and st.size or 0} end
    end
  end
  return out
end

-- the names of dir that are new or changed (type, size) since listing: a sorted list of {name, what}
function M.outside(listing, dir, skip)
  local now, out = M.listing(dir, skip), {}
  for _, name in ipairs(sorted_keys(now)) do
    local b, a = listing[name], now[name]
    if not b then out[#out + 1] = {name = name, what = "added"}
    elseif b.type ~= a.type or b.size ~= a.size then out[#out + 1] = {name = name, what = "changed"} end
  end
  for _, name in ipairs(sorted_keys(listing)) do
    if not now[name] then out[#out + 1] = {name = name, what = "deleted"} end
  end
  return out
end

M.sh, M.read, M.write = sh, read, write

return M
