-- speedrun.agent.judge: the benchmark's LLM judge (benchmark.md §5, llm_judge_eval prompt v4) over
-- the cells of a study (docs/agent.md "Reading a study"). For each cell the judge model gets the
-- start recipe, the reference diff record i -> i+1 (tasks/record_NN/recipe.lua) and the diff of
-- the agent's best node (the fastest valid agent node, as speedrun.agent.metrics picks it) against
-- v_0; it lists the reference's key speed-relevant changes, judges each agent change, and answers
-- JSON with reproducibility_score = the fraction of key changes reproduced (0..1). The reply is
-- parsed robustly (the last fenced json block after any </think>, else the last JSON object in
-- the text); a reply without usable JSON is one clear error for that cell, never a crash.
-- Each cell gets CELL/judge.json {schema, model, status = ok|error|skipped, reproducibility_score,
-- error, key_changes, agent_changes, best_node, reply, at} and CELL/judge.llm.jsonl (every call).
local json = require "speedrun.json"
local journal = require "speedrun.agent.journal"
local metrics = require "speedrun.agent.metrics"
local edits = require "speedrun.agent.coder_edits"
local taskmod = require "speedrun.task"
local read_file = require("speedrun.util").read_file

local M = {}
local fmt = string.format
local null = json.null

M.SCHEMA = "speedrun.agent.judge/1"

-- ---------------------------------------------------------------------------------------------
-- diffs for the prompt: unified-style, 3 lines of context, one header per file

function M.unified(old, new, path)
  local a, b = edits.split_lines(old or ""), edits.split_lines(new or "")
  local hunks = edits.diff_hunks(a, b)
  if #hunks == 0 then return "" end
  local out = {fmt("--- a/%s", path), fmt("+++ b/%s", path)}
  local shown = 0   -- the last old line already printed
  for _, h in ipairs(hunks) do
    local from = math.max(shown + 1, h.start - 3)
    out[#out + 1] = fmt("@@ old line %d @@", h.start)
    for k = from, h.start - 1 do out[#out + 1] = " " .. a[k] end
    for k = h.start, h.start + h.count - 1 do out[#out + 1] = "-" .. a[k] end
    for _, l in ipairs(h.lines) do out[#out + 1] = "+" .. l end
    local stop = math.min(#a, h.start + h.count + 2)
    for k = h.start + h.count, stop do out[#out + 1] = " " .. a[k] end
    shown = stop
  end
  return table.concat(out, "\n") .. "\n"
end

-- the diff between two file sets ({path = text})
function M.files_diff(old, new)
  local paths, seen = {}, {}
  for p in pairs(old) do paths[#paths + 1] = p seen[p] = true end
  for p in pairs(new) do if not seen[p] then paths[#paths + 1] = p end end
  table.sort(paths)
  local out = {}
  for _, p in ipairs(paths) do
    if old[p] ~= new[p] then out[#out + 1] = M.unified(old[p], new[p], p) end
  end
  return table.concat(out)
end

-- ---------------------------------------------------------------------------------------------
-- the prompt (the benchmark's rubric)

M.SYSTEM = "You are an expert in machine learning systems and GPU training performance. You judge how faithfully an "
  .. "AI agent reproduced a known human speed-up of a training recipe. Be strict and concrete."

function M.prompt(start, ref_diff, agent_diff, task)
  local user = table.concat({
    fmt("A training recipe (Lua 5.4, the speedrun host's NanoGPT recipe format) was sped up by humans from record %d "
      .. "to record %d. An AI agent started from the same recipe and made its own changes.", task, task + 1),
    "", "# Baseline recipe (record " .. task .. ")", "```lua", start, "```", "",
    "# Human changes (record " .. task .. " -> record " .. (task + 1) .. ")", "```diff", ref_diff, "```", "",
    "# Agent changes (its fastest valid version against the baseline)", "```diff",
    agent_diff ~= "" and agent_diff or "(no change)", "```", "",
    "# What to do",
    "1. List the key changes of the human diff that matter for training speed (time to the target validation loss). "
      .. "Ignore comments, renames and refactors that do not change the computation.",
    "2. Analyse each change of the agent: which key change (if any) it reproduces, fully or in part, and whether it is "
      .. "implemented correctly.",
    "3. Score: reproducibility_score = the fraction of the key changes the agent reproduced correctly, from 0 to 1 "
      .. "(a partial reproduction counts by the part reproduced).",
    "", "End your answer with one JSON block exactly in this form:", "```json",
    '{"key_changes": ["..."], "agent_changes": [{"change": "...", "reproduces": "... or null", "correct": true}], '
      .. '"reproducibility_score": 0.0}', "```"}, "\n")
  return {{role = "system", content = M.SYSTEM}, {role = "user", content = user}}
end

-- ---------------------------------------------------------------------------------------------
-- parsing the reply

local function excerpt(s)
  s = tostring(s):gsub("%s+", " ")
  return #s > 160 and s:sub(1, 157) .. "..." or s
end

-- the text after the last </think> (reasoning models), else all of it
local function visible(text)
  local last
  local i = 1
  while true do
    local _, e = text:find("</think>", i, true)
    if not e then break end
    last, i = e, e + 1
  end
  return last and text:sub(last + 1) or text
end

local function fenced(text)
  local blocks = {}
  for lang, body in text:gmatch("```([%w_-]*)[ \t]*\n(.-)```") do blocks[#blocks + 1] = {lang = lang:lower(), body = body} end
  return blocks
end

-- the last balanced {...} object of the text that decodes (strings honoured)
local function last_object(text)
  local found, bad
  local i = 1
  while true do
    local s = text:find("{", i, true)
    if not s then break end
    local depth, j, instr = 0, s, false
    while j <= #text do
      local c = text:sub(j, j)
      if instr then
        if c == "\\" then j = j + 1 elseif c == '"' then instr = false end
      elseif c == '"' then instr = true
      elseif c == "{" then depth = depth + 1
      elseif c == "}" then depth = depth - 1 if depth == 0 then break end end
      j = j + 1
    end
    if depth ~= 0 then break end
    local t = json.decode(text:sub(s, j))
    if type(t) == "table" then found = t else bad = text:sub(s, j) end
    i = j + 1
  end
  return found, bad
end

-- parse(reply) -> {reproducibility_score, key_changes, agent_changes} | nil, error
function M.parse(text)
  if type(text) ~= "string" or not text:match("%S") then return nil, "empty reply from the judge" end
  local body = visible(text)
  local t, malformed
  local blocks = fenced(body)
  for k = #blocks, 1, -1 do
    local b = blocks[k]
    if b.lang == "json" or b.body:match("^%s*{") then
      local v = json.decode(b.body)
      if type(v) == "table" then t = v break end
      malformed = malformed or b.body
    end
  end
  if not t then
    local obj, bad = last_object(body)
    t, malformed = obj, malformed or bad
  end
  if not t then
    if malformed then return nil, "malformed JSON in the judge's reply: " .. excerpt(malformed) end
    return nil, "no JSON in the judge's reply: " .. excerpt(body)
  end
  local s = t.reproducibility_score
  if s == nil or s == null then return nil, "the judge's JSON has no reproducibility_score" end
  if type(s) == "string" then s = tonumber(s) end
  if type(s) ~= "number" or s ~= s or s < 0 or s > 1 then
    return nil, "reproducibility_score must be a number in [0, 1] (got " .. excerpt(json.encode(t.reproducibility_score)) .. ")"
  end
  return {reproducibility_score = s, key_changes = type(t.key_changes) == "table" and t.key_changes or null,
          agent_changes = type(t.agent_changes) == "table" and t.agent_changes or null}
end

M.REMINDER = "Your answer had no usable JSON. Reply again with only the JSON block: ```json\n"
  .. '{"key_changes": [...], "agent_changes": [...], "reproducibility_score": <a number from 0 to 1>}\n```'

-- ---------------------------------------------------------------------------------------------
-- one cell

local function call(chat, messages)
  local ok, reply, err = pcall(function()
    if type(chat) == "function" then return chat(messages) end
    return chat:chat(messages)
  end)
  if not ok then return nil, tostring(reply) end
  if not reply then return nil, tostring(err) end
  return type(reply) == "table" and reply.content or reply
end

-- the inputs of the judge for a cell: start, reference diff, agent diff, best node | nil, why
function M.inputs(cell, study)
  local F = metrics.run_fsr(cell, study)
  if not F.agent_best_id then return nil, "no valid agent node to judge" end
  local t = study.manifest and taskmod.get(study.manifest, cell.task)
  if not t then return nil, "task " .. tostring(cell.task) .. " is not in the manifest" end
  local root = study.manifest.root or "."
  local a, b = read_file(root .. "/" .. t.start .. "/recipe.lua"), read_file(root .. "/" .. t.target .. "/recipe.lua")
  if not (a and b) then return nil, "cannot read the reference recipes of task " .. cell.task end
  local base, mine = metrics.agent_files(cell, F.agent_best_id)
  return {start = base["recipe.lua"] or a, ref_diff = M.unified(a, b, "recipe.lua"), agent_diff = M.files_diff(base, mine),
          best = F.agent_best_id}
end

-- judge_cell(cell, study, {chat, model, retries}) -> the judge.json table (also written)
function M.judge_cell(cell, study, o)
  local R = {schema = M.SCHEMA, model = o.model or null, at = os.date("!%Y-%m-%dT%H:%M:%SZ"), task = cell.task,
             reproducibility_score = null, error = null, best_node = null}
  local inp, why = M.inputs(cell, study)
  if not inp then
    R.status, R.error = "skipped", why
  else
    R.best_node = inp.best
    local messages = M.prompt(inp.start, inp.ref_diff, inp.agent_diff, cell.task)
    for attempt = 0, o.retries or 1 do
      local text, err = call(o.chat, messages)
      if not text then R.status, R.error = "error", "judge call failed: " .. err break end
      R.reply = #text > 20000 and text:sub(1, 20000) .. "..." or text
      local P, perr = M.parse(text)
      if P then
        R.status, R.error = "ok", null
        R.reproducibility_score, R.key_changes, R.agent_changes = P.reproducibility_score, P.key_changes, P.agent_changes
        break
      end
      R.status, R.error, R.attempts = "error", perr, attempt + 1
      messages = {messages[1], messages[2], {role = "assistant", content = text}, {role = "user", content = M.REMINDER}}
    end
  end
  journal.write_json(cell.dir .. "/judge.json", R)
  return R
end

-- run(dirs, {chat | make_chat(cell), model, retries, force}) -> results, study; cells with a
-- judge.json of the same model are kept unless force
function M.run(dirs, o)
  local study = metrics.load(dirs)
  local results = {}
  for _, cell in ipairs(study.cells) do
    local old = journal.read_json(cell.dir .. "/judge.json")
    local R
    if not o.force and type(old) == "table" and old.status == "ok" and old.model == (o.model or null) then
      R = old
      R.kept = true
    else
      local chat = o.chat or o.make_chat(cell)
      local ok, res = pcall(M.judge_cell, cell, study, {chat = chat, model = o.model, retries = o.retries})
      R = ok and res or {status = "error", error = "judge: " .. tostring(res)}
    end
    R.dir = cell.dir
    results[#results + 1] = R
  end
  return results, study
end

return M
