-- speedrun.agent.coder: the coder of the agent loop, after the benchmark's aider coder
-- (docs/agent.md, "The coder"): the prompt (role and rules, task, current files, hint, bug history,
-- instruction, the SEARCH/REPLACE format), the parse of a reply's blocks, their all-or-nothing
-- application to a node's directory, and run, which drives one model through a prompt and up to
-- max_reflections rounds of corrections when a SEARCH does not match.
--   coder.prompt{task, rules, files, hint, bug_history, instruction} -> messages
--   coder.parse(text) -> edits, problems       coder.apply(dir, edits) -> true | nil, problems
--   coder.run{chat = fn, dir, max_reflections = 5, <prompt fields>} -> {ok, edits, rounds, error, replies}
--   coder.blocks_from_diff(old_text, new_text, path) -> a reply (the scripted oracle of the tests)
local E = require "speedrun.agent.coder_edits"
local A = require "speedrun.agent.coder_apply"
local P = require "speedrun.agent.coder_prompt"

local coder = {}

coder.parse = E.parse
coder.apply = A.apply
coder.closest = A.closest
coder.blocks_from_diff = E.blocks_from_diff
coder.format_block = E.format_block
coder.prompt = P.prompt
coder.INSTRUCTIONS = P.INSTRUCTIONS
coder.SYSTEM = P.SYSTEM
coder.FORMAT = P.FORMAT

-- the files the prompt shows when none are given: the directory's top-level .lua/.cu/.cuh files
local function dir_files(dir)
  local hc = require "speedrun.harness_core"
  local files = {}
  for _, name in ipairs(hc.listdir(dir) or {}) do
    local ext = name:match("%.(%w+)$")
    local st = hc.stat(dir .. "/" .. name, true)
    if ext and A.EXTENSIONS[ext] and st and st.type == "file" then
      local f = io.open(dir .. "/" .. name, "rb")
      if f then files[name] = f:read("a"); f:close() end
    end
  end
  return files
end

local function edit_key(e) return e.path .. "\0" .. e.search .. "\0" .. e.replace end

-- the kept edits followed by the reply's edits that are not copies of kept ones
local function combine(kept, edits)
  local seen, out = {}, {}
  for _, e in ipairs(kept) do seen[edit_key(e)] = true; out[#out + 1] = e end
  for _, e in ipairs(edits) do
    if not seen[edit_key(e)] then seen[edit_key(e)] = true; out[#out + 1] = e end
  end
  return out
end

local function add_usage(total, reply)
  local u = type(reply) == "table" and reply.usage
  if type(u) ~= "table" then return end
  for _, k in ipairs({"prompt_tokens", "completion_tokens", "total_tokens"}) do
    total[k] = total[k] + (tonumber(u[k]) or 0)
  end
end

local function summary(problems)
  local p = problems[1]
  local first = tostring(p.detail or ""):match("^[^\n]*")
  return ("%s: %s%s"):format(p.kind, first, #problems > 1 and (" (and %d more)"):format(#problems - 1) or "")
end

-- one model reply weighed: "done" | "refused" | "retry", the edits to keep, the feedback text
local function weigh(o, text, kept, res)
  local edits, pp = E.parse(text, o.default_path or "recipe.lua")
  if #edits == 0 then
    res.error = "no edit: the reply has no usable SEARCH/REPLACE block" ..
      (#pp > 0 and (" (" .. pp[1] .. ")") or "")
    return "retry", kept, P.no_edit(pp)
  end
  local candidate = combine(kept, edits)
  local ok, problems
  if #pp > 0 then ok, problems = A.check(o.dir, candidate) else ok, problems = A.apply(o.dir, candidate) end
  if ok and #pp == 0 then res.edits, res.changed = candidate, problems; return "done" end
  problems = ok and {} or problems
  res.problems = problems
  for _, p in ipairs(problems) do
    if p.kind ~= "no_match" and p.kind ~= "ambiguous" then res.error = "refused: " .. summary(problems); return "refused" end
  end
  local failed = {}
  for _, p in ipairs(problems) do if p.edit then failed[p.edit] = true end end
  local keep = {}
  for i, e in ipairs(candidate) do if not failed[i] then keep[#keep + 1] = e end end
  res.error = #problems > 0 and summary(problems) or ("malformed block: " .. pp[1])
  return "retry", keep, P.reflection(problems, #candidate, pp)
end

-- run{chat, dir, max_reflections = 5, default_path = "recipe.lua", <prompt fields>} -> {ok, edits
-- (applied), rounds (model replies), error, replies (their texts), messages (the conversation),
-- usage (token sums of replies that carry usage), problems (the last failed round's)}
function coder.run(o)
  local fields = setmetatable({files = o.files or dir_files(o.dir)}, {__index = o})
  local messages = coder.prompt(fields)
  local res = {ok = false, edits = {}, rounds = 0, replies = {}, messages = messages,
               usage = {prompt_tokens = 0, completion_tokens = 0, total_tokens = 0}}
  local max_reflections, kept = o.max_reflections or 5, {}
  while true do
    res.rounds = res.rounds + 1
    local called, reply, err = pcall(o.chat, messages)
    if not called then reply, err = nil, reply end
    local text = type(reply) == "table" and reply.content or reply
    if reply == nil or type(text) ~= "string" then
      res.error = "chat: " .. tostring(err or "reply without content")
      return res
    end
    add_usage(res.usage, reply)
    res.replies[#res.replies + 1] = text
    messages[#messages + 1] = {role = "assistant", content = text}
    local verdict, keep, feedback = weigh(o, text, kept, res)
    if verdict == "done" then res.ok, res.error = true, nil; return res end
    if verdict == "refused" or res.rounds > max_reflections then return res end
    kept = keep
    messages[#messages + 1] = {role = "user", content = feedback}
  end
end

return coder
