-- speedrun.agent.similarity: a model-free measure of how much of the reference change (record i ->
-- i+1) an agent's change reproduces (docs/agent.md "Reading a study"). Both texts are lexed (Lua,
-- or C/CUDA for .cu/.cuh: comments and layout dropped), each line becomes its tokens, the token
-- lines are diffed (speedrun.agent.coder_edits.diff_hunks), and each hunk gives the multiset of
-- tokens it removes and adds (tokens both removed and added in one hunk cancel, so changing
-- `lr = 1.5e-3` to `lr = 1.8e-3` removes 1.5e-3 and adds 1.8e-3). The overlap of two changes is
-- the multiset intersection of their removed tokens plus that of their added tokens:
--   recall = overlap / |reference change|, precision = overlap / |agent change|,
--   dice = 2 overlap / (|reference change| + |agent change|).
local edits = require "speedrun.agent.coder_edits"

local M = {}

local OPS3 = {["..."] = true}
local OPS2 = {["=="] = true, ["~="] = true, ["<="] = true, [">="] = true, ["//"] = true, ["::"] = true,
              ["<<"] = true, [">>"] = true, [".."] = true, ["!="] = true, ["&&"] = true, ["||"] = true,
              ["+="] = true, ["-="] = true, ["*="] = true, ["/="] = true, ["->"] = true, ["++"] = true,
              ["--"] = true}

-- the end of a quoted string starting at i (quote q), escapes honoured; #s when unterminated
local function string_end(s, i, q)
  local j = i + 1
  while j <= #s do
    local c = s:sub(j, j)
    if c == "\\" then j = j + 2
    elseif c == q or c == "\n" then return j
    else j = j + 1 end
  end
  return #s
end

local function number_at(s, i)
  return s:match("^0[xX][%x%.]+[pP][%+%-]?%d+", i) or s:match("^0[xX][%x%.]+", i)
    or s:match("^%d*%.?%d+[eE][%+%-]?%d+", i) or s:match("^%d+%.?%d*[eE][%+%-]?%d+", i)
    or s:match("^%d+%.%d*[fFlLuU]*", i) or s:match("^%.%d+[fF]?", i) or s:match("^%d+[fFlLuU]*", i)
end

-- the comment starting at i, or nil: its last index
local function comment_end(s, i, c_like)
  if c_like then
    if s:sub(i, i + 1) == "//" then return (s:find("\n", i, true) or #s + 1) - 1 end
    if s:sub(i, i + 1) == "/*" then local _, e = s:find("*/", i + 2, true) return e or #s end
    return nil
  end
  if s:sub(i, i + 1) ~= "--" then return nil end
  local eq = s:match("^%[(=*)%[", i + 2)
  if eq then local _, e = s:find("]" .. eq .. "]", i + 4 + #eq, true) return e or #s end
  return (s:find("\n", i, true) or #s + 1) - 1
end

-- lex(text, c_like) -> {{tokens of line 1}, {tokens of line 2}, ...} (lines without tokens left out)
function M.lex(s, c_like)
  local lines, cur, line = {}, {}, 1
  local function push(tok, at)
    if at ~= line then
      if #cur > 0 then lines[#lines + 1] = cur end
      cur, line = {}, at
    end
    cur[#cur + 1] = tok
  end
  local i, ln = 1, 1
  while i <= #s do
    local c = s:sub(i, i)
    local ce = comment_end(s, i, c_like)
    local e
    if c == "\n" then ln = ln + 1 i = i + 1
    elseif c:match("%s") then i = i + 1
    elseif ce then
      local _, nl = s:sub(i, ce):gsub("\n", "")
      ln, i = ln + nl, ce + 1
    else
      local tok
      local eq = not c_like and s:match("^%[(=*)%[", i)
      if eq then
        e = select(2, s:find("]" .. eq .. "]", i, true)) or #s
      elseif c == '"' or c == "'" then e = string_end(s, i, c)
      else
        tok = number_at(s, i) or s:match("^[%a_][%w_]*", i)
        if not tok then
          tok = OPS3[s:sub(i, i + 2)] and s:sub(i, i + 2) or OPS2[s:sub(i, i + 1)] and s:sub(i, i + 1) or c
        end
        e = i + #tok - 1
      end
      tok = tok or s:sub(i, e)
      push(tok, ln)
      local _, nl = tok:gsub("\n", "")
      ln, i = ln + nl, e + 1
    end
  end
  if #cur > 0 then lines[#lines + 1] = cur end
  return lines
end

local function is_c(path) return path and (path:match("%.cuh?$") or path:match("%.[ch]$")) and true or false end

local function bag_add(bag, tok, n)
  bag[tok] = (bag[tok] or 0) + n
  if bag[tok] == 0 then bag[tok] = nil end
end

local function size(bag)
  local n = 0
  for _, v in pairs(bag) do n = n + v end
  return n
end

-- change(old, new, path) -> {removed = bag, added = bag, size = n}: the token change of one file
function M.change(old, new, path, into)
  local c = is_c(path)
  local A, B = M.lex(old or "", c), M.lex(new or "", c)
  local a, b = {}, {}
  for i, t in ipairs(A) do a[i] = table.concat(t, " ") end
  for i, t in ipairs(B) do b[i] = table.concat(t, " ") end
  local out = into or {removed = {}, added = {}}
  for _, h in ipairs(edits.diff_hunks(a, b)) do
    local rem, add = {}, {}
    for k = h.start, h.start + h.count - 1 do for _, t in ipairs(A[k]) do bag_add(rem, t, 1) end end
    for _, line in ipairs(h.lines) do for t in line:gmatch("%S+") do bag_add(add, t, 1) end end
    for t, n in pairs(rem) do
      local common = math.min(n, add[t] or 0)
      if common > 0 then bag_add(rem, t, -common) bag_add(add, t, -common) end
    end
    for t, n in pairs(rem) do bag_add(out.removed, t, n) end
    for t, n in pairs(add) do bag_add(out.added, t, n) end
  end
  out.size = size(out.removed) + size(out.added)
  return out
end

-- the change between two file sets ({path = text}); a missing file is empty
function M.change_files(old, new)
  local out = {removed = {}, added = {}}
  local seen = {}
  local paths = {}
  for p in pairs(old) do paths[#paths + 1] = p seen[p] = true end
  for p in pairs(new) do if not seen[p] then paths[#paths + 1] = p end end
  table.sort(paths)
  for _, p in ipairs(paths) do
    if old[p] ~= new[p] then M.change(old[p], new[p], p, out) end
  end
  out.size = size(out.removed) + size(out.added)
  return out
end

local function overlap(x, y)
  local n = 0
  for t, k in pairs(x) do n = n + math.min(k, y[t] or 0) end
  return n
end

-- compare(ref, agent) -> {dice, recall, precision, overlap, ref_tokens, agent_tokens}; recall,
-- precision and dice are nil where their denominator is 0
function M.compare(ref, agent)
  local ov = overlap(ref.removed, agent.removed) + overlap(ref.added, agent.added)
  local nr, na = ref.size, agent.size
  return {overlap = ov, ref_tokens = nr, agent_tokens = na, recall = nr > 0 and ov / nr or nil,
          precision = na > 0 and ov / na or nil, dice = (nr + na) > 0 and 2 * ov / (nr + na) or nil}
end

return M
