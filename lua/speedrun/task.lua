-- speedrun.task: `speedrun task list | show N [--hint L] | init N DIR [--hint L] [--force]`.
-- Reads the task manifest (tasks/tasks.lua, docs/recipes.md), the records' meta.lua files and the
-- hints (hints/task_NN/level{1,2,3}.md). `init` makes a workspace: the start record's recipe.lua,
-- TASK.md (the statement and rules the agent is told), task.json (the machine-readable task for
-- `speedrun score DIR --task N`), INSTRUCTIONS.md (for external coding agents: what to edit, how
-- to run and score, the log format, the rules; one template, INSTRUCTIONS below) and, with
-- --hint, HINT.md.
local M = {}
local fmt = string.format

local function source_dir()
  local ok, H = pcall(require, "speedrun.harness_core")
  if ok and H.source_dir then return H.source_dir() end
  return os.getenv("SPEEDRUN_SOURCE_DIR") or "."
end

local read_file = require("speedrun.util").read_file

local write_file = require("speedrun.util").write_file
local shell_quote = require("speedrun.util").shell_quote

-- load a data-only Lua file (manifest, meta) in an empty environment
local function load_data(path)
  local src = read_file(path)
  if not src then return nil, "cannot read " .. path end
  local chunk, err = load(src, "@" .. path, "t", {})
  if not chunk then return nil, err end
  local ok, t = pcall(chunk)
  if not ok then return nil, path .. ": " .. tostring(t) end
  if type(t) ~= "table" then return nil, path .. ": does not return a table" end
  return t
end

-- the manifest with defaults merged into every task; root = the checkout
function M.manifest(root)
  root = root or source_dir()
  local m, err = load_data(root .. "/tasks/tasks.lua")
  if not m then return nil, err end
  for _, t in ipairs(m.tasks) do
    for k, v in pairs(m.defaults or {}) do if t[k] == nil then t[k] = v end end
  end
  m.root = root
  return m
end

function M.get(m, id)
  for _, t in ipairs(m.tasks) do if t.id == id then return t end end
  return nil
end

function M.meta(root, rel) return load_data(root .. "/" .. rel .. "/meta.lua") end

-- hint text for level spec "1", "2", "3", "1,2" or "1+2+3"; nil, msg when missing
function M.hint(root, task, spec)
  local parts = {}
  for lv in tostring(spec):gmatch("[^,+]+") do
    local n = tonumber(lv)
    if not n or n < 1 or n > 3 or n ~= math.floor(n) then return nil, "hint level must be 1, 2 or 3 (or a list like 1,2)" end
    local path = fmt("%s/%s/level%d.md", root, task.hints, n)
    local s = read_file(path)
    if not s then return nil, "no hint file " .. path end
    parts[#parts + 1] = s
  end
  if #parts == 0 then return nil, "empty hint level" end
  return table.concat(parts, "\n\n---\n\n")
end

local function minutes(ms) return ms and fmt("%.2f min", ms / 60000) or "?" end

-- the task statement (TASK.md and `show`)
function M.statement(m, t)
  local root = m.root
  local ms, mt = M.meta(root, t.start) or {}, M.meta(root, t.target) or {}
  local L = {}
  local function add(s) L[#L + 1] = s or "" end
  add(fmt("# Task %d: %s", t.id, t.title))
  add()
  add(fmt("Start from record %d (%s) and reach record %d's training time (%s).", t.start_record, ms.title or t.start,
          t.target_record, mt.title or t.target))
  add()
  add("## Goal")
  add()
  add(t.description)
  add()
  add("| | record | benchmark train time (8xH100) | published | val loss | steps |")
  add("|---|---|---|---|---|---|")
  add(fmt("| start | %d | %s (%d ms) | %.1f min | %.4f | %s |", t.start_record, minutes(t.t_start_ms), t.t_start_ms,
          t.published_start_min, t.val_loss_start, ms.steps or "?"))
  add(fmt("| target | %d | %s (%d ms) | %.1f min | %.4f | %s |", t.target_record, minutes(t.t_target_ms), t.t_target_ms,
          t.published_target_min, t.val_loss_target, mt.steps or "?"))
  add()
  add(fmt("Validation target: %.2f at full scale (other scales: the target record's config); the benchmark's analysis threshold is %.2f.",
          t.target_val_loss, t.analysis_val_loss))
  add(fmt("Scoring: `speedrun score WORKSPACE --task %d` (%d runs, at proxy scale as many as records %d and %d were calibrated for; p < %g); FSR against the calibrated times of records %d and %d on the same card and scale.",
          t.id, t.runs, t.start_record, t.target_record, t.alpha, t.start_record, t.target_record))
  add()
  add("## Rules")
  add()
  for _, r in ipairs(t.rules) do add("- " .. r) end
  add()
  add("Files you may create or edit: " .. table.concat(t.allowed_files, ", ") .. ".")
  add("Off limits: " .. table.concat(t.forbidden, "; ") .. ".")
  add()
  add("## Start")
  add()
  add(fmt("recipe.lua is %s/recipe.lua: %s.", t.start, ms.summary or ""))
  add("Try it: `speedrun train recipe.lua --scale micro` (CPU, seconds) or `--scale proxy` (one GPU).")
  return table.concat(L, "\n") .. "\n"
end

-- ---------------------------------------------------------------------------------------------
-- INSTRUCTIONS.md: one template; ${name} is a fact of the task (M.instructions)
local INSTRUCTIONS = [==[
# Instructions for coding agents: task ${id}

${title}. Start: record ${start_record} (`recipe.lua`); target: record ${target_record}'s training
time at a validation loss below the target. The task statement is `TASK.md`${hint_note}.

## What you may edit

- Files you may create or edit: ${allowed} (in this folder).
- Off limits: ${forbidden}.
- Keep the recipe contract: `recipe.lua` returns a table with `config` (named scales: `micro`,
  `proxy`, `full`, ...), `setup(ctx)`, `train_step(ctx, step, batch)`, `eval(ctx, inputs)` and
  optionally `schedule(ctx, step)` (docs/harness.md, "The recipe contract").

## How to run

    speedrun train recipe.lua --scale micro                       # CPU, seconds: does it run?
    speedrun train recipe.lua --scale proxy --time-budget 300     # one GPU, a fixed 5-minute budget
    speedrun train recipe.lua --scale proxy                       # the planned steps, as scored

- `--time-budget SECONDS`: training stops when the host's train time reaches the budget (checked
  between steps, after the warm-up), then the host validates. The recipe still gets its planned
  step count (`ctx.steps`), so the run may stop before it: a schedule that decays to the end
  should read `ctx.time_budget_s` (nil without a budget) if it must finish inside the budget.
- Other options: `--steps N`, `--seed N`, `--out DIR`, `--device cpu|cuda`, `--time-limit S`
  (wall-time kill), `--restricted` (the scoring sandbox); `speedrun train --help`.
- Each run writes to `runs/<folder>-<time>/` next to the recipe (or `--out`).

## How to score

    speedrun score ${dir} --task ${id}

${runs} runs in the restricted environment (seeds 1..${runs}; at proxy scale as many as the task's
calibrated references were tuned for, `speedrun calibrate --show`); `pass` when every run completed
and the mean validation loss is below the target with p < ${alpha} (one-sided t-test); the score
is FSR = (t_start - t) / (t_start - t_target) against the calibrated train times of records
${start_record} and ${target_record} on the same card and scale (run
`speedrun calibrate --tasks ${start_record},${target_record}` first). Target validation loss:
${target_val_loss} at full scale (other scales: record ${target_record}'s config). A fixed-budget
comparison instead: add `--time-budget S` to score (every run stops at the budget) and compare
`val_bpb`.

## What a run reports

`log.txt` (written by the host; your prints go to `recipe.log`):

    recipe NAME, scale S, device D, seed N: STEPS steps of TOKENS tokens, target val loss X on N tokens[, time budget Ss ...]
    step:S/N train_loss:X train_time:Tms step_avg:Yms
    step:S/N val_loss:X train_time:Tms step_avg:Yms
    result: valid: val_loss X <= TARGET in Tms of training (S steps, R tokens/s), val_bpb B[, stopped by the time budget of Ss at step S of N]
    result: KIND: MESSAGE (val_bpb B)

`results.json` (schema `speedrun.results/1`): `status` (`valid`, `invalid`, `lua_error`,
`cuda_fault`, `oom`, `timeout`, `nan`, `rejected`, `crash`), `valid`, `failure {kind, message}`,
`metrics {val_loss, val_bpb, val_bytes, val_tokens, train_time_ms, step_avg_ms, steps,
planned_steps, time_budget_s, stopped_by ("steps" | "time_budget"), tokens, tokens_per_s,
peak_host_bytes, peak_gpu_bytes}`, `config`, `checks`, `curve`. `val_bpb`: validation bits per
byte, the cross-entropy summed over the validation tokens (nats) / (ln 2 x the UTF-8 bytes those
tokens decode to); it does not depend on the vocabulary (null, with `val_bpb_reason`, when the
GPT-2 tokenizer files are missing). `speedrun score` writes `score.json` (verdict, mean and std of
val_loss and train_time_ms, the t-test, `fsr`).

## Rules

The host owns the data, the clock and the validation: the batches come from the host, the
training time is measured by the host around every step (device-synchronised), and the validation
loss is computed by the host from your `eval`'s logits on tokens your recipe never sees in
training. Scored runs run in a restricted environment: no `os.execute`, `io.popen`, C modules or
`debug`; files may be read only inside this folder (never the data folder or `runs/`) and written
only in `ctx.out_dir`; `require` loads only the library's recipe modules (`speedrun`, `.core`, `.nn`,
`.optim`, `.autograd`, `.gpt`, `.kernel`, `.cuda`, `.profile`, `.attention`) and your own
modules here; the library's tables are read-only (write your own functions instead of replacing
the library's).

${rules}

Rejected (status `rejected`, never a pass): a sandbox violation (even if caught), a non-causal
`eval` (later tokens moving earlier logits or their tokens' losses), a stateful `eval` (anything
reachable from `ctx` or your recipe changed by an eval call, even restored later: learning from
validation inputs, counting calls, changing the model, calling backward, an optimizer or a CUDA
graph replay, drawing random numbers, using a file, an iterator or a coroutine made before the
call), a modified batch, a train time above the wall time, links to the data or to earlier runs. A score with runs whose losses are bitwise identical across seeds, far below the
target record's, or whose validation costs more than 25x the training's time per token, is
`flagged` for a person to look at.
]==]

-- INSTRUCTIONS.md for task t of manifest m, the workspace dir and the hint level (or nil)
function M.instructions(m, t, dir, hint)
  local rules = {}
  for _, r in ipairs(t.rules) do rules[#rules + 1] = "- " .. r end
  local facts = {id = t.id, title = t.title, start_record = t.start_record, target_record = t.target_record,
                 allowed = table.concat(t.allowed_files, ", "), forbidden = table.concat(t.forbidden, "; "),
                 runs = t.runs, alpha = t.alpha, target_val_loss = fmt("%.2f", t.target_val_loss),
                 dir = dir, rules = table.concat(rules, "\n"),
                 hint_note = hint and fmt("; the hint (level %s) is `HINT.md`", hint) or ""}
  return (INSTRUCTIONS:gsub("%${([%w_]+)}", function(k)
    local v = facts[k]
    if v == nil then error("INSTRUCTIONS.md: no fact '" .. k .. "'", 0) end
    return tostring(v)
  end))
end

-- ---------------------------------------------------------------------------------------------
local USAGE = [[
usage: speedrun task list
       speedrun task show N [--hint 1|2|3]
       speedrun task init N DIR [--hint L] [--force]
       speedrun task sync-hints [N ...] [--check]
Tasks of the speedrun benchmark: task N starts from record N's recipe and aims at record N+1.
  list     the tasks, their start and target records and times
  show     the task statement and rules; with --hint, the hint at that level (a list such as
           1,2 gives several levels)
  init     a workspace in DIR: recipe.lua (record N), TASK.md, INSTRUCTIONS.md (for coding agents),
           task.json and, with --hint, HINT.md;
           DIR must be empty or missing unless --force
  sync-hints  set every `key = number` the hints of the tasks (default all) state about a scale
           (`proxy: steps = 92`) to the target recipe's value there, after a re-tune moved the
           budgets; prints each change; --check only lists them (exit 1 if any)
Score a workspace with `speedrun score DIR --task N`. The manifest is tasks/tasks.lua
(docs/recipes.md).
]]

local function die(msg, code)
  io.stderr:write("speedrun task: ", msg, "\n")
  return code or 2
end

local function parse(args)
  local o, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, val = a:match("^%-%-([%w-]+)=(.*)$")
    if name then o[name] = val
    elseif a == "--hint" then
      i = i + 1
      if not args[i] then return nil, "--hint needs a level (1, 2 or 3)" end
      o.hint = args[i]
    elseif a == "--force" or a == "--check" or a == "--help" or a == "-h" then o[(a:gsub("^%-+", ""))] = true
    elseif a:sub(1, 2) == "--" then return nil, "unknown option " .. a
    else pos[#pos + 1] = a end
    i = i + 1
  end
  for k in pairs(o) do
    if k ~= "hint" and k ~= "force" and k ~= "check" and k ~= "help" and k ~= "h" then return nil, "unknown option --" .. k end
  end
  return o, pos
end

local function is_dir_nonempty(dir)
  local p = io.popen("ls -A " .. shell_quote(dir) .. " 2>/dev/null")
  if not p then return false end
  local s = p:read("a")
  p:close()
  return s ~= ""
end

local function task_arg(m, s)
  local id = tonumber(s)
  local t = id and M.get(m, id)
  if not t then
    local ids = {}
    for _, x in ipairs(m.tasks) do ids[#ids + 1] = tostring(x.id) end
    return nil, fmt("no task %s (tasks: %s)", tostring(s), table.concat(ids, ", "))
  end
  return t
end

function M.list(m)
  print(fmt("%-4s %-7s %-7s %-11s %-11s %s", "task", "start", "target", "t_start", "t_target", "change"))
  for _, t in ipairs(m.tasks) do
    print(fmt("%-4d %-7s %-7s %-11s %-11s %s", t.id, "rec " .. t.start_record, "rec " .. t.target_record,
              minutes(t.t_start_ms), minutes(t.t_target_ms), t.title))
  end
  print("(times: the benchmark's baseline train_time on 8xH100; `speedrun task show N` for details)")
  return 0
end

function M.show(m, t, hint)
  io.stdout:write(M.statement(m, t))
  if hint then
    local h, err = M.hint(m.root, t, hint)
    if not h then return die(err) end
    io.stdout:write("\n## Hint (level ", hint, ")\n\n", h, "\n")
  else
    io.stdout:write("\nHints: levels 1 (pseudocode), 2 (description), 3 (mini-paper): `speedrun task show ",
                    t.id, " --hint L`.\n")
  end
  return 0
end

-- sync-hints: the scale values each task's hints (levels 1-3) state set to its target recipe's
-- (speedrun.hintcheck), for the tasks ts; check: only say which are stale (exit 1 if any)
function M.sync_hints(m, ts, check)
  local hc = require "speedrun.hintcheck"
  local rc, changed, files = 0, 0, 0
  for _, t in ipairs(ts) do
    local ok, recipe = pcall(dofile, m.root .. "/" .. t.target .. "/recipe.lua")
    if not ok or type(recipe) ~= "table" or type(recipe.config) ~= "table" then
      return die(fmt("task %d: the target recipe %s/recipe.lua cannot be read: %s", t.id, t.target, tostring(recipe)), 1)
    end
    for level = 1, 3 do
      local rel = fmt("%s/level%d.md", t.hints, level)
      local text = read_file(m.root .. "/" .. rel)
      if not text then return die(fmt("task %d: %s cannot be read", t.id, rel), 1) end
      local new, changes, unresolved = hc.sync(text, recipe.config)
      for _, c in ipairs(changes) do
        print(fmt("%s:%d: %s %s = %.15g -> %.15g", rel, c.line, c.scale, c.key, c.from, c.to))
      end
      for _, c in ipairs(unresolved) do
        print(fmt("%s:%d: %s %s = %.15g: %s holds %s at %s; edit it by hand", rel, c.line, c.scale, c.key, c.value,
                  t.target, table.concat(c.vals, " and "), c.scale))
        rc = 1
      end
      if #changes > 0 then
        changed, files = changed + #changes, files + 1
        if not check then
          local wok, werr = write_file(m.root .. "/" .. rel, new)
          if not wok then return die(fmt("%s: %s", rel, tostring(werr)), 1) end
        end
      end
    end
  end
  print(fmt("%d stale value%s in %d hint file%s%s", changed, changed == 1 and "" or "s", files, files == 1 and "" or "s",
            changed == 0 and "" or check and " (not written: --check)" or ", written"))
  return (check and changed > 0) and 1 or rc
end

function M.init(m, t, dir, hint, force)
  local H = require "speedrun.harness_core"
  if is_dir_nonempty(dir) and not force then return die(dir .. " is not empty (use --force to write into it)") end
  local h
  if hint then
    local err
    h, err = M.hint(m.root, t, hint)
    if not h then return die(err) end
  end
  local ok, err = H.mkdir(dir)
  if not ok then return die("cannot create " .. dir .. ": " .. tostring(err)) end
  for _, name in ipairs(t.workspace_files) do
    local src = read_file(fmt("%s/%s/%s", m.root, t.start, name))
    if not src then return die(fmt("missing %s/%s", t.start, name)) end
    local wok, werr = write_file(dir .. "/" .. name, src)
    if not wok then return die(tostring(werr)) end
  end
  write_file(dir .. "/TASK.md", M.statement(m, t))
  write_file(dir .. "/INSTRUCTIONS.md", M.instructions(m, t, dir, hint))
  if h then write_file(dir .. "/HINT.md", h .. "\n") end
  local json = require "speedrun.json"
  local info = {schema = "speedrun.task/1", task = t.id, start_record = t.start_record, target_record = t.target_record,
                start = t.start, target = t.target, hint = hint or json.null, entry = t.entry,
                allowed_files = json.array(t.allowed_files), target_val_loss = t.target_val_loss,
                t_start_ms = t.t_start_ms, t_target_ms = t.t_target_ms, runs = t.runs, alpha = t.alpha,
                created_at = os.date("!%Y-%m-%dT%H:%M:%SZ")}
  write_file(dir .. "/task.json", json.encode(info, true) .. "\n")
  print(fmt("task %d workspace in %s: recipe.lua (record %d), TASK.md, INSTRUCTIONS.md, task.json%s", t.id, dir, t.start_record,
            h and (", HINT.md (level " .. hint .. ")") or ""))
  print(fmt("next: speedrun train %s/recipe.lua --scale micro; speedrun score %s --task %d", dir, dir, t.id))
  return 0
end

function M.main(args)
  local o, pos = parse(args)
  if not o then return die(pos .. "\n" .. USAGE) end
  if o.help or o.h then io.stdout:write(USAGE) return 0 end
  local cmd = pos[1]
  if not cmd then io.stderr:write(USAGE) return 2 end
  local m, err = M.manifest()
  if not m then return die(err, 1) end
  if cmd == "list" then return M.list(m)
  elseif cmd == "show" then
    if not pos[2] then return die("show needs a task number\n" .. USAGE) end
    local t, terr = task_arg(m, pos[2])
    if not t then return die(terr) end
    if o.hint then   -- a bad level is a usage error before anything is printed
      local _, herr = M.hint(m.root, t, o.hint)
      if herr then return die(herr) end
    end
    return M.show(m, t, o.hint)
  elseif cmd == "sync-hints" then
    local ts = {}
    for i = 2, #pos do
      local t, terr = task_arg(m, pos[i])
      if not t then return die(terr) end
      ts[#ts + 1] = t
    end
    return M.sync_hints(m, #ts > 0 and ts or m.tasks, o.check)
  elseif cmd == "init" then
    if not pos[2] or not pos[3] then return die("init needs a task number and a folder\n" .. USAGE) end
    local t, terr = task_arg(m, pos[2])
    if not t then return die(terr) end
    return M.init(m, t, pos[3], o.hint, o.force)
  end
  return die("unknown subcommand '" .. cmd .. "'\n" .. USAGE)
end

return M
