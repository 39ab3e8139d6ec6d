-- speedrun.agent.coder_prompt: the coder's prompt, after the benchmark's (aider coder, §4 of
-- shared/reference/benchmark.md): a system message (the role, the rules of a speedrun recipe and
-- of the task, the target) and a user message (the task description, the current files, the hint
-- as "ideas", the bug history as a <version_log>, the instruction, the SEARCH/REPLACE format with
-- the benchmark's strict-diff rules). The reflection messages of coder.run are here too.
local M = {}

M.SYSTEM = [[You are a machine learning scientist with expertise in large language models and high-performance computing. You make training recipes faster.

The recipe is Lua 5.4 for speedrun, a C engine that trains GPT models: recipe.lua builds the model, the optimizer, the schedule and the training step with the engine's primitives (require "speedrun"), and may load CUDA kernels from .cu files of the workspace.

Rules:
- You may edit recipe.lua and create or edit other .lua, .cu and .cuh files of the workspace (paths relative to it). No other file and no path outside the workspace can be edited.
- The host owns the training data, the clock and the validation: it feeds the batches, times the training and measures the validation loss itself. Do not read data files, time anything yourself or touch the validation; a recipe that tries is rejected.
- No package can be installed; the sandbox denies files, processes and the network to the recipe.
- Keep the recipe contract: the functions and fields the host calls keep their names and meaning.
- eval runs the engine's ops only: a CUDA kernel of yours launched inside eval is rejected. Wrap a kernel in speedrun.kernel.op{name =, forward =, backward =, reference =}: eval (and the CPU) then runs its reference, written with the engine's ops.
- Performance matters more than tidiness; keep the recipe runnable.
- Do not ask for permission or clarification: reply with your changes.]]

M.TARGET = "The target: reach the validation loss the task names, measured by the host, in the least training time on the host's clock."

M.FORMAT = [[# Edit format
Reply with your changes as SEARCH/REPLACE blocks; only these blocks are applied. Each block is:
1. the file's path alone on its line, relative to the workspace (e.g. recipe.lua);
2. the opening fence ```lua;
3. the line <<<<<<< SEARCH;
4. a run of lines copied exactly from the current file;
5. the line =======;
6. the lines that replace them;
7. the line >>>>>>> REPLACE;
8. the closing fence ```.

The SEARCH section must match the current file exactly, character for character: every blank, indentation, comment and line. It must occur exactly once in the file: include enough lines to make it unique, but keep each block small (several small blocks rather than one large one, and never the whole file). Blocks apply in order, each to the file as the earlier blocks left it. To create a new file, give its path and an empty SEARCH section. To delete lines, leave the REPLACE section empty.

Example:
recipe.lua
```lua
<<<<<<< SEARCH
local lr = 1.5e-3
=======
local lr = 1.8e-3
>>>>>>> REPLACE
```]]

M.PLAN = "First give a short plan: the ideas, pseudo-code for each step, and the challenges you expect. Then implement it as SEARCH/REPLACE blocks."
M.IMPLEMENT = "Implement the ideas above, fully and correctly, as SEARCH/REPLACE blocks."

M.INSTRUCTIONS = {
  draft = "Write a first improved version of the recipe: one well-founded change that should reach the target in less training time.",
  improve = "Improve the current recipe so that it reaches the target validation loss in less training time.",
  debug = "The current version failed (see the bug history and the task description). Find the cause and fix it with the smallest change that makes it run and reach the target, keeping its ideas.",
}

-- the instruction's text: a key of INSTRUCTIONS (with the plan or implement clause) or verbatim
local function instruction_text(instruction, hint)
  instruction = instruction or "improve"
  local base = M.INSTRUCTIONS[instruction]
  if not base then return instruction end
  if instruction == "debug" then return base .. " Reply with SEARCH/REPLACE blocks." end
  return base .. " " .. ((hint and hint ~= "") and M.IMPLEMENT or M.PLAN)
end

-- a fence longer than any run of backticks in the text
local function fence_for(text)
  local longest = 0
  for run in text:gmatch("`+") do longest = math.max(longest, #run) end
  return ("`"):rep(math.max(3, longest + 1))
end

local function lang(path)
  if path:match("%.lua$") then return "lua" end
  if path:match("%.cuh?$") then return "cuda" end
  return ""
end

-- the files, recipe.lua first and the others by name, each as "path\n```lang\ntext```"
function M.render_files(files)
  local names = {}
  for name in pairs(files or {}) do names[#names + 1] = name end
  table.sort(names, function(a, b)
    if (a == "recipe.lua") ~= (b == "recipe.lua") then return a == "recipe.lua" end
    return a < b
  end)
  local out = {}
  for _, name in ipairs(names) do
    local text = files[name]
    if text:sub(-1) ~= "\n" then text = text .. "\n" end
    local fence = fence_for(text)
    out[#out + 1] = ("%s\n%s%s\n%s%s"):format(name, fence, lang(name), text, fence)
  end
  return table.concat(out, "\n\n")
end

local function results_text(results)
  if type(results) ~= "table" then return tostring(results) end
  local keys = {}
  for k in pairs(results) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local lines = {}
  for _, k in ipairs(keys) do lines[#lines + 1] = ("\t%s: %s"):format(k, tostring(results[k])) end
  return "\n" .. table.concat(lines, "\n")
end

-- the bug history as the benchmark's <version_log> of <info> blocks
function M.render_bug_history(history)
  local out = {"Recent changes derived from this version had bugs. Learn from them and do not repeat them:", "<version_log>"}
  for _, b in ipairs(history) do
    out[#out + 1] = "<info>"
    if b.version then out[#out + 1] = "Version: " .. tostring(b.version) end
    if b.parent then out[#out + 1] = "Parent version: " .. tostring(b.parent) end
    if b.hypothesis then out[#out + 1] = "Hypothesis: " .. tostring(b.hypothesis) end
    if b.results then out[#out + 1] = "Results: " .. results_text(b.results) end
    out[#out + 1] = "Has bugs? Yes"
    if b.error then out[#out + 1] = "Error: " .. tostring(b.error) end
    if b.summary then out[#out + 1] = "Outcome summary: " .. tostring(b.summary) end
    out[#out + 1] = "</info>"
  end
  out[#out + 1] = "</version_log>"
  return table.concat(out, "\n")
end

-- prompt{task, rules, files, hint, bug_history, instruction [, target]} -> messages
function M.prompt(o)
  o = o or {}
  local system = M.SYSTEM .. "\n\n" .. (o.target and ("The target: " .. o.target) or M.TARGET)
  if o.rules and o.rules ~= "" then system = system .. "\n\n# Rules of this task\n" .. o.rules end
  local user = {"# Task description\n" .. (o.task or "(none given)")}
  user[#user + 1] = "# Current files\nStudy the current version of the files:\n\n" .. M.render_files(o.files)
  if o.hint and o.hint ~= "" then
    user[#user + 1] = "# Ideas\nImplement the following ideas:\n\n" .. o.hint
  end
  if o.bug_history and #o.bug_history > 0 then
    user[#user + 1] = "# Bug history\n" .. M.render_bug_history(o.bug_history)
  end
  user[#user + 1] = "# Instruction\n" .. instruction_text(o.instruction, o.hint)
  user[#user + 1] = M.FORMAT
  return {{role = "system", content = system}, {role = "user", content = table.concat(user, "\n\n")}}
end

-- the reflection message after a reply whose blocks failed: the problems (each failed SEARCH
-- with the closest lines of its file), the malformed blocks, and what to send back
function M.reflection(problems, n_edits, parse_problems)
  local out, failed = {}, 0
  for _, p in ipairs(problems) do
    if p.edit then failed = failed + 1 end
    local s = ("## %s: %s\n%s"):format(p.path or "(no path)", p.kind or "problem", p.detail or "")
    if p.search and p.search ~= "" then s = s .. "\nThe SEARCH section was:\n```\n" .. p.search .. "```" end
    out[#out + 1] = s
  end
  for _, pp in ipairs(parse_problems or {}) do out[#out + 1] = "## malformed block\n" .. pp end
  local head = {}
  if failed > 0 then head[#head + 1] = ("%d of your SEARCH/REPLACE blocks failed."):format(failed) end
  if parse_problems and #parse_problems > 0 then
    head[#head + 1] = ("%d of your blocks were malformed."):format(#parse_problems)
  end
  head[#head + 1] = "Nothing has been written yet."
  local kept = n_edits - failed
  if kept > 0 then head[#head + 1] = ("The other %d blocks matched and are kept: do not send them again."):format(kept) end
  return table.concat(head, " ") .. "\n\n" .. table.concat(out, "\n\n") ..
    "\n\nReply with corrected SEARCH/REPLACE blocks for the failed ones only. The SEARCH section must match the current file exactly, character for character, and occur exactly once."
end

-- the message after a reply with no usable block (none, or malformed ones)
function M.no_edit(parse_problems)
  local s = "Your reply contained no usable SEARCH/REPLACE block, so nothing was changed."
  if parse_problems and #parse_problems > 0 then
    s = s .. "\nProblems:\n- " .. table.concat(parse_problems, "\n- ")
  end
  return s .. "\n\nReply with your changes as SEARCH/REPLACE blocks in the format given above."
end

return M
