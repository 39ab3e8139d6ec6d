-- speedrun.agent.coder_apply: applies the coder's SEARCH/REPLACE edits to a workspace directory,
-- all or nothing. Every path is checked first (relative, no "..", no symbolic link leading out of
-- the directory, a .lua/.cu/.cuh file); then every edit is applied in memory, in order (a SEARCH
-- must occur exactly once, whole lines, byte for byte; an empty SEARCH creates a new file); only
-- when nothing failed are the files written, each to a temporary file renamed over the old one.
-- A failed SEARCH is reported with the lines of the file most like it (for the reflection round).
local hc = require "speedrun.harness_core"
local E = require "speedrun.agent.coder_edits"

local M = {}

M.EXTENSIONS = {lua = true, cu = true, cuh = true}

local function problem(edit, index, kind, detail, extra)
  local p = {path = edit and edit.path, kind = kind, detail = detail, edit = index}
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- the path with "./" segments dropped, or nil, kind, detail when it is refused
local function clean_path(path)
  if type(path) ~= "string" or path == "" then return nil, "bad_path", "empty path" end
  if path:sub(1, 1) == "/" or path:sub(1, 1) == "~" then
    return nil, "outside", "absolute path: edits name files relative to the workspace"
  end
  if path:find("[^%w%._%-/]") then
    return nil, "bad_path", "path has characters other than letters, digits, '.', '_', '-' and '/'"
  end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then return nil, "outside", "'..' leaves the workspace" end
    if seg ~= "." then parts[#parts + 1] = seg end
  end
  if #parts == 0 or path:sub(-1) == "/" then return nil, "bad_path", "not a file name" end
  local ext = parts[#parts]:match("%.([%w]+)$")
  if not (ext and M.EXTENSIONS[ext]) then
    return nil, "bad_path", "only .lua, .cu and .cuh files may be edited"
  end
  return table.concat(parts, "/")
end

local function inside(root, real)
  return real == root or real:sub(1, #root + 1) == root .. "/"
end

-- the path checked against the real directory: nil or kind, detail. The deepest part of the path
-- that exists is resolved (symbolic links followed) and must stay inside root; the file itself
-- may not be a symbolic link nor anything but a regular file.
local function check_real(root, dir, rel)
  local full = dir .. "/" .. rel
  local st = hc.stat(full, true)
  if st and st.type == "link" then
    local real = hc.realpath(full)
    if not real or not inside(root, real) then
      return "outside", "a symbolic link that leads out of the workspace"
    end
    return "bad_path", "a symbolic link (edit the file it names instead)"
  end
  if st and st.type ~= "file" then return "bad_path", "not a regular file" end
  local probe = full
  while true do
    probe = probe:match("^(.*)/[^/]*$")
    if not probe or #probe < #dir then break end
    local real = hc.realpath(probe)
    if real then
      if not inside(root, real) then return "outside", "a directory of the path leads out of the workspace" end
      break
    end
  end
  return nil
end

-- checks every edit's path: the list of problems (empty when all are fine) and the cleaned paths
local function check_paths(dir, edits)
  local problems, rels = {}, {}
  local root = hc.realpath(dir)
  if not root then
    return {problem(nil, nil, "bad_path", "workspace directory " .. tostring(dir) .. " not found")}, rels
  end
  for i, e in ipairs(edits) do
    local rel, kind, detail = clean_path(e.path)
    if rel then kind, detail = check_real(root, dir, rel) end
    if kind then problems[#problems + 1] = problem(e, i, kind, detail) else rels[i] = rel end
    if type(e.search) ~= "string" or type(e.replace) ~= "string" then
      problems[#problems + 1] = problem(e, i, "bad_path", "edit without search/replace text")
    end
  end
  return problems, rels
end

-- similarity of two lines in [0, 1]: 1 when equal, 0.9 when equal but for blanks, else 0.9 x the
-- Dice coefficient of their character bigrams (blanks collapsed)
local function profile(line)
  local norm = line:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  local grams, n = {}, 0
  if #norm == 1 then grams[norm] = 1; n = 1 end
  for k = 1, #norm - 1 do
    local g = norm:sub(k, k + 1)
    grams[g] = (grams[g] or 0) + 1
    n = n + 1
  end
  return {line = line, norm = norm, grams = grams, n = n}
end

local function similarity(a, b)
  if a.line == b.line then return 1 end
  if a.norm == b.norm then return 0.9 end
  if a.n == 0 or b.n == 0 then return 0 end
  local common = 0
  for g, c in pairs(a.grams) do
    local d = b.grams[g]
    if d then common = common + math.min(c, d) end
  end
  return 0.9 * 2 * common / (a.n + b.n)
end

-- closest(text, search) -> {first, last, score, text}: the window of the file's lines, as many as
-- the SEARCH has, whose mean line similarity to the SEARCH's lines is highest (nil: empty file)
function M.closest(text, search)
  local fl, sl = E.split_lines(text), E.split_lines(search)
  if #fl == 0 or #sl == 0 then return nil end
  local fp, sp = {}, {}
  for i, l in ipairs(fl) do fp[i] = profile(l) end
  for j, l in ipairs(sl) do sp[j] = profile(l) end
  local n = math.min(#sl, #fl)
  local best, best_at = -1, 1
  for s = 1, #fl - n + 1 do
    local sum = 0
    for j = 1, n do sum = sum + similarity(fp[s + j - 1], sp[j]) end
    if sum > best then best, best_at = sum, s end
  end
  return {first = best_at, last = best_at + n - 1, score = best / #sl,
          text = table.concat(fl, "\n", best_at, best_at + n - 1) .. "\n"}
end

local read = require("speedrun.util").read_file
-- the in-memory state of a file: {text, existed, nl_added (a final newline added for matching)}
local function load(states, order, dir, rel)
  if states[rel] then return states[rel] end
  local text = read(dir .. "/" .. rel)
  local st = {text = text, existed = text ~= nil, original = text}
  if text and text ~= "" and text:sub(-1) ~= "\n" then st.text, st.nl_added = text .. "\n", true end
  states[rel] = st
  order[#order + 1] = rel
  return st
end

local function no_match(e, i, rel, text)
  local c = M.closest(text, e.search)
  local detail = ("SEARCH block %d does not match %s exactly (whole lines, byte for byte)"):format(i, rel)
  if c then
    detail = detail .. ("; the closest lines of %s (lines %d-%d):\n%s"):format(rel, c.first, c.last, c.text)
  end
  return problem(e, i, "no_match", detail, {search = e.search, closest = c})
end

-- applies one edit to its file's state: nil or a problem
local function apply_one(st, e, i, rel)
  if e.search == "" then
    if st.text and st.text ~= "" then
      return problem(e, i, "no_match", ("SEARCH block %d is empty, which creates a new file, but %s exists and is not empty")
        :format(i, rel), {search = ""})
    end
    st.text, st.changed = e.replace, true
    return nil
  end
  if not st.text then
    return problem(e, i, "no_match", ("SEARCH block %d: %s does not exist (an empty SEARCH creates a file)"):format(i, rel),
      {search = e.search})
  end
  local at = E.occurrences(st.text, e.search)
  if #at == 0 then return no_match(e, i, rel, st.text) end
  if #at > 1 then
    return problem(e, i, "ambiguous", ("SEARCH block %d occurs %d times in %s (at lines %s): include more lines to make it unique")
      :format(i, #at, rel, table.concat(at, ", ")), {search = e.search, lines = at})
  end
  local a = st.text:find(e.search, 1, true)
  while a ~= 1 and st.text:sub(a - 1, a - 1) ~= "\n" do a = st.text:find(e.search, a + 1, true) end
  st.text = st.text:sub(1, a - 1) .. e.replace .. st.text:sub(a + #e.search)
  st.changed = true
  return nil
end

local write_file = require("speedrun.util").write_file

local function final_text(st)
  if st.nl_added and st.text:sub(-1) == "\n" then return st.text:sub(1, -2) end
  return st.text
end

-- writes every changed file (temporary files first, then renames; a failed rename puts back the
-- files already renamed): nil or an "io" problem
local function commit(dir, states, order)
  local temps, done = {}, {}
  for _, rel in ipairs(order) do
    local st = states[rel]
    if st.changed then
      local full = dir .. "/" .. rel
      local parent = full:match("^(.*)/[^/]*$")
      if parent and not hc.realpath(parent) then hc.mkdir(parent) end
      local tmp = full .. ".coder-tmp"
      local ok, err = write_file(tmp, final_text(st))
      if not ok then
        for _, t in ipairs(temps) do os.remove(t.tmp) end
        return problem({path = rel}, nil, "io", "writing " .. rel .. ": " .. tostring(err))
      end
      temps[#temps + 1] = {tmp = tmp, full = full, st = st}
    end
  end
  for k, t in ipairs(temps) do
    local ok, err = os.rename(t.tmp, t.full)
    if not ok then
      for j = k, #temps do os.remove(temps[j].tmp) end
      for _, d in ipairs(done) do
        if d.st.existed then
          if write_file(d.full .. ".coder-tmp", d.st.original) then os.rename(d.full .. ".coder-tmp", d.full) end
        else os.remove(d.full) end
      end
      return problem({path = t.full}, nil, "io", "renaming onto " .. t.full .. ": " .. tostring(err))
    end
    done[#done + 1] = t
  end
  return nil
end

-- apply(dir, edits) -> true, {paths changed} | nil, problems: every problem of every edit (each
-- {path, kind = "no_match"|"ambiguous"|"outside"|"bad_path"|"io", detail, edit = its index,
-- search, closest = {first, last, score, text} for a no_match}); nothing is written unless all
-- edits apply
local function apply(dir, edits, dry)
  dir = tostring(dir):gsub("/+$", "")
  if dir == "" then dir = "/" end
  local problems, rels = check_paths(dir, edits)
  if #problems > 0 then return nil, problems end
  local states, order = {}, {}
  for i, e in ipairs(edits) do
    local rel = rels[i]
    problems[#problems + 1] = apply_one(load(states, order, dir, rel), e, i, rel)
  end
  if #problems > 0 then return nil, problems end
  local p = not dry and commit(dir, states, order)
  if p then return nil, {p} end
  local changed = {}
  for _, rel in ipairs(order) do if states[rel].changed then changed[#changed + 1] = rel end end
  return true, changed
end

function M.apply(dir, edits) return apply(dir, edits, false) end

-- check(dir, edits): apply's answer without writing anything
function M.check(dir, edits) return apply(dir, edits, true) end

return M
