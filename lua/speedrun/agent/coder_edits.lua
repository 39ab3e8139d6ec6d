-- speedrun.agent.coder_edits: the SEARCH/REPLACE block format of the coder (aider's "diff" edit
-- format, as the benchmark's coder uses it): parse(text) reads the blocks of a model's reply,
-- format_block writes one, and blocks_from_diff(old, new, path) writes the blocks that turn one
-- text into another (the scripted "oracle" model of the tests). Applying edits is coder_apply.lua.
--
-- A block, with its file's path on the line before (fences and text around are optional):
--   recipe.lua
--   ```lua
--   <<<<<<< SEARCH
--   ...exact lines of the file...
--   =======
--   ...the lines that replace them...
--   >>>>>>> REPLACE
--   ```
-- An edit is {path = string, search = string, replace = string, line = the reply line of its
-- SEARCH marker}: each of search/replace is its lines, each ending in "\n" ("" when none).
local M = {}

local function count_run(line, ch)
  local n = 0
  while line:sub(n + 1, n + 1) == ch do n = n + 1 end
  return n
end

-- the markers: 5 to 9 of the character, then the word (aider's patterns), trailing blanks allowed
local function is_head(l)
  local n = count_run(l, "<")
  return n >= 5 and n <= 9 and l:sub(n + 1):match("^ ?SEARCH>?%s*$") ~= nil
end
local function is_divider(l)
  local n = count_run(l, "=")
  return n >= 5 and n <= 9 and l:sub(n + 1):match("^%s*$") ~= nil
end
local function is_updated(l)
  local n = count_run(l, ">")
  return n >= 5 and n <= 9 and l:sub(n + 1):match("^ ?REPLACE%s*$") ~= nil
end
local function is_fence(l) return l:match("^%s*```") ~= nil or l:match("^%s*~~~") ~= nil end

M.is_head, M.is_divider, M.is_updated = is_head, is_divider, is_updated

-- the path a line names, when the whole line is one (decorations stripped: "# ", "**", "`", a
-- trailing ":"), else nil
local function path_of(line)
  local s = line:gsub("^%s+", ""):gsub("%s+$", "")
  s = s:gsub("^#+%s*", ""):gsub("^[%*`'\"]+", ""):gsub(":$", ""):gsub("[%*`'\"]+$", ""):gsub(":$", "")
  if s == "" or s:find("%s") or not s:match("[^/]%.[%w_]+$") then return nil end
  return s
end
M.path_of = path_of

-- the path of the block whose SEARCH marker is line i: the nearest line before it that is not
-- blank or a fence (at most 3 lines back, never past the previous block's end)
local function block_path(lines, i, stop)
  local seen = 0
  for j = i - 1, math.max(stop + 1, 1), -1 do
    local l = lines[j]
    if not (l:match("^%s*$") or is_fence(l)) then
      return path_of(l)
    end
    seen = seen + 1
    if seen >= 3 then return nil end
  end
  return nil
end

local function split_lines(text)
  local lines = {}
  if text == "" then return lines end
  for l in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  if text:sub(-1) == "\n" then lines[#lines] = nil end
  return lines
end
M.split_lines = split_lines

local function join(lines, a, b)
  if b < a then return "" end
  return table.concat(lines, "\n", a, b) .. "\n"
end

-- one block from its SEARCH marker at line i: the edit (or nil), the line to go on from, and a
-- problem (or nil)
local function read_block(lines, i, path)
  local div, upd
  for j = i + 1, #lines do
    local l = lines[j]
    if is_head(l) then
      return nil, j, ("reply line %d: SEARCH block not closed (a new SEARCH marker at line %d)"):format(i, j)
    elseif not div and is_divider(l) then
      div = j
    elseif div and is_updated(l) then
      upd = j
      break
    elseif not div and is_updated(l) then
      return nil, j + 1, ("reply line %d: SEARCH block without a ======= line"):format(i)
    end
  end
  if not div then return nil, #lines + 1, ("reply line %d: SEARCH block without a ======= line"):format(i) end
  if not upd then return nil, #lines + 1, ("reply line %d: SEARCH block without a >>>>>>> REPLACE line"):format(i) end
  if not path then
    return nil, upd + 1, ("reply line %d: SEARCH block without a file path on the line before it"):format(i)
  end
  return {path = path, search = join(lines, i + 1, div - 1), replace = join(lines, div + 1, upd - 1), line = i}, upd + 1
end

-- parse(text [, default_path]) -> edits, problems: every well-formed block of the reply, in order;
-- problems lists the malformed ones (strings naming the reply line). A block with no path before
-- it takes the previous block's path, else default_path, else it is a problem.
function M.parse(text, default_path)
  local edits, problems = {}, {}
  if type(text) ~= "string" then return edits, {"reply is not text"} end
  local lines = split_lines((text:gsub("\r\n", "\n"):gsub("\r", "\n")))
  local i, last_end, last_path = 1, 0, nil
  while i <= #lines do
    local l = lines[i]
    if is_head(l) then
      local path = block_path(lines, i, last_end) or last_path or default_path
      local edit, next_i, problem = read_block(lines, i, path)
      if edit then
        edits[#edits + 1] = edit
        last_path = edit.path
      else
        problems[#problems + 1] = problem
      end
      last_end = edit and next_i - 1 or i   -- a malformed block's lines may hold the next one's path
      i = next_i
    else
      if is_divider(l) or is_updated(l) then
        problems[#problems + 1] = ("reply line %d: %s outside a SEARCH block"):format(i, l)
      end
      i = i + 1
    end
  end
  return edits, problems
end

-- the fence language of a path
local function lang(path)
  if path:match("%.lua$") then return "lua" end
  if path:match("%.cuh?$") then return "cuda" end
  return ""
end

-- format_block(path, search, replace) -> the block's text (search/replace as in an edit)
function M.format_block(path, search, replace)
  return table.concat({path, "\n```", lang(path), "\n<<<<<<< SEARCH\n", search, "=======\n", replace,
    ">>>>>>> REPLACE\n```\n"})
end

-- occurrences(content, search) -> the 1-based line numbers where search occurs starting at a line
-- start (overlapping occurrences counted): the exact-match rule of coder_apply
function M.occurrences(content, search)
  local found, init = {}, 1
  if search == "" then return found end
  while true do
    local a = content:find(search, init, true)
    if not a then break end
    if a == 1 or content:sub(a - 1, a - 1) == "\n" then
      local _, nl = content:sub(1, a - 1):gsub("\n", "")
      found[#found + 1] = nl + 1
    end
    init = a + 1
  end
  return found
end

-- the longest common subsequence of a[lo_a..hi_a] and b[lo_b..hi_b] as a list of ops
-- {"=" | "-" | "+", line} (dynamic programming over the middle that prefix/suffix leave)
local function lcs_ops(a, b, lo_a, hi_a, lo_b, hi_b, ops)
  local n, m = hi_a - lo_a + 1, hi_b - lo_b + 1
  local L = {}
  for i = n + 1, 1, -1 do
    local row, below = {}, L[i + 1]
    for j = m + 1, 1, -1 do
      if i > n or j > m then row[j] = 0
      elseif a[lo_a + i - 1] == b[lo_b + j - 1] then row[j] = below[j + 1] + 1
      else row[j] = math.max(below[j], row[j + 1]) end
    end
    L[i] = row
  end
  local i, j = 1, 1
  while i <= n or j <= m do
    if i <= n and j <= m and a[lo_a + i - 1] == b[lo_b + j - 1] then
      ops[#ops + 1] = {"=", a[lo_a + i - 1]}; i, j = i + 1, j + 1
    elseif j <= m and (i > n or L[i][j + 1] >= L[i + 1][j]) then
      ops[#ops + 1] = {"+", b[lo_b + j - 1]}; j = j + 1
    else
      ops[#ops + 1] = {"-", a[lo_a + i - 1]}; i = i + 1
    end
  end
end

-- diff_hunks(a, b) -> {{start = old line, count = old lines replaced, lines = {new lines}}, ...}
function M.diff_hunks(a, b)
  local p = 0
  while p < #a and p < #b and a[p + 1] == b[p + 1] do p = p + 1 end
  local s = 0
  while s < #a - p and s < #b - p and a[#a - s] == b[#b - s] do s = s + 1 end
  local ops = {}
  lcs_ops(a, b, p + 1, #a - s, p + 1, #b - s, ops)
  local hunks, line, cur = {}, p + 1, nil
  for _, op in ipairs(ops) do
    if op[1] == "=" then
      cur = nil
      line = line + 1
    else
      if not cur then cur = {start = line, count = 0, lines = {}}; hunks[#hunks + 1] = cur end
      if op[1] == "-" then cur.count = cur.count + 1; line = line + 1
      else cur.lines[#cur.lines + 1] = op[2] end
    end
  end
  return hunks
end

-- the block of one hunk over the current lines, with the least context that makes its SEARCH
-- unique in the current text; the current lines are updated as the block would update them
local function hunk_block(cur, h, offset, path)
  local p, len = h.start + offset, h.count
  local cb, ca = 0, 0
  if len == 0 then if p <= #cur then ca = 1 else cb = 1 end end
  local grow_after = true
  while true do
    local search = join(cur, p - cb, p + len + ca - 1)
    if #M.occurrences(join(cur, 1, #cur), search) == 1 then break end
    if (grow_after or p - cb <= 1) and p + len + ca <= #cur then ca = ca + 1 else cb = cb + 1 end
    grow_after = not grow_after
  end
  local search = join(cur, p - cb, p + len + ca - 1)
  local rep = {}
  for k = p - cb, p - 1 do rep[#rep + 1] = cur[k] end
  for _, l in ipairs(h.lines) do rep[#rep + 1] = l end
  for k = p + len, p + len + ca - 1 do rep[#rep + 1] = cur[k] end
  local replace = join(rep, 1, #rep)
  for _ = 1, len + cb + ca do table.remove(cur, p - cb) end
  for k, l in ipairs(rep) do table.insert(cur, p - cb + k - 1, l) end
  return M.format_block(path, search, replace)
end

-- blocks_from_diff(old_text, new_text, path) -> a reply whose SEARCH/REPLACE blocks, applied in
-- order, turn old_text into new_text (byte for byte when both end in a newline or neither does)
function M.blocks_from_diff(old_text, new_text, path)
  local head = "Edits to " .. path .. ", from a line diff.\n\n"
  if old_text == new_text then return head .. "(no change)\n" end
  local a, b = split_lines(old_text), split_lines(new_text)
  if #a == 0 then return head .. M.format_block(path, "", join(b, 1, #b)) end
  local blocks, offset = {}, 0
  for _, h in ipairs(M.diff_hunks(a, b)) do
    blocks[#blocks + 1] = hunk_block(a, h, offset, path)
    offset = offset + #h.lines - h.count
  end
  return head .. table.concat(blocks, "\n")
end

return M
