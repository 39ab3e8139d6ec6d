-- The external coder (speedrun.agent.extcoder, `speedrun agent run --coder-cmd CMD`) with shim
-- commands written here as small shell scripts: the environment and the prompt file the command
-- sees; a change to recipe.lua and new code files taken as the node's edits, the hypothesis from
-- NOTES.md / HYPOTHESIS.md or the first output line; refused (workspace restored, all or nothing):
-- a .py file, a deleted recipe.lua, a symbolic link to /etc/passwd, writes beside the workspace, a
-- failing command; an empty change and a command past --coder-timeout (killed) are errors. Then
-- the loop through the CLI on task 1 at micro scale on the CPU (synthetic shards, a hand-made
-- calibration): a command copying record 2's recipe makes a valid node whose recipe is record 2's,
-- and resume keeps the command. docs/agent.md "External coders".
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local taskmod = require "speedrun.task"
local journal = require "speedrun.agent.journal"
local extcoder = require "speedrun.agent.extcoder"
local tree = require "speedrun.agent.extcoder_tree"

local W = T.workspace("agent-extcoder", {})
local sh = T.shell_quote
local read, write = tree.read, tree.write
local REC2_SRC = read(assert(H.realpath("../tasks/record_02/recipe.lua")))
local REC2 = W.tmp .. "/record_02.lua"   -- a copy outside tasks/, which the command does not see
write(REC2, REC2_SRC)
local process = require "speedrun.process"
local HIDING, NO_HIDING = process.hiding()   -- user and mount namespaces (not in every container)
-- without namespaces a coder run needs --coder-see-all
local SEE = HIDING and "" or " --coder-see-all"

-- the start workspace of task 1 (hint level 1), made once and copied for each case
local TEMPLATE = W.tmp .. "/template"
os.execute("rm -rf " .. sh(TEMPLATE))
local m = assert(taskmod.manifest())
local task = assert(taskmod.get(m, 1))
assert(taskmod.init(m, task, TEMPLATE, "1", true) == 0)
local START = read(TEMPLATE .. "/recipe.lua")

local function shim(name, body)
  local path = W.tmp .. "/shims/" .. name .. ".sh"
  H.mkdir(W.tmp .. "/shims")
  write(path, "#!/bin/sh\n" .. body .. "\n")
  os.execute("chmod +x " .. sh(path))
  return sh(path)
end

-- a fresh node RUN/v_1/workspace for a case; returns the workspace and the node folder
local function node(name)
  local run = W.tmp .. "/units/" .. name
  os.execute("rm -rf " .. sh(run) .. " && mkdir -p " .. sh(run .. "/v_1") .. " && cp -R " .. sh(TEMPLATE) .. " "
             .. sh(run .. "/v_1/workspace"))
  return run .. "/v_1/workspace", run .. "/v_1"
end

local INSTRUCTION = "Propose one change that makes the recipe faster, then implement it."

-- runs the shim as the loop would; returns the result, the workspace and the node folder
local function run_shim(name, body, timeout)
  local ws, nd = node(name)
  local o = {cmd = shim(name, body), timeout = timeout or 30}
  if not HIDING then o.hide = false end
  local ext = assert(extcoder.new(o))
  local res = ext.run {dir = ws, task = taskmod.statement(m, task), rules = "- " .. table.concat(task.rules, "\n- "),
                       files = journal.code_files(ws), hint = taskmod.hint(m.root, task, "1"), instruction = INSTRUCTION,
                       bug_history = {{summary = "Version: v_7\nOutcome summary: status: lua_error", error = "boom at line 3"}},
                       chat = function() error("an external coder makes no chat call") end}
  return res, ws, nd
end

-- the workspace is exactly the template again
local function restored(ws, msg)
  local snap = assert(tree.snapshot(TEMPLATE))
  local d = tree.diff(snap, ws)
  T.eq(#d, 0, msg .. ": workspace restored" .. (d[1] and (" (" .. d[1].path .. " " .. d[1].what .. ")") or ""))
end

T.case("the command's environment and prompt; an edit of recipe.lua taken; hypothesis = first output line", function()
  local res, ws, nd = run_shim("env", [[
env | grep '^SPEEDRUN_' | sort > "$SPEEDRUN_SCRATCH/env.txt"
pwd -P > "$SPEEDRUN_SCRATCH/pwd.txt"
cp "$SPEEDRUN_PROMPT_FILE" "$SPEEDRUN_SCRATCH/prompt.md"
echo
echo "  raise the learning rate  "
echo "on stderr" >&2
echo "-- tuned" >> recipe.lua]])
  T.eq(res.ok, true, tostring(res.error))
  T.eq(json.encode(res.edits), json.encode({{path = "recipe.lua", kind = "modified"}}))
  T.eq(res.rounds, 1)
  T.eq(res.usage.total_tokens, 0)
  T.eq(res.hypothesis, "raise the learning rate")
  T.eq(read(ws .. "/recipe.lua"), START .. "-- tuned\n")
  local env = read(nd .. "/scratch/env.txt")
  T.ok(env:find("SPEEDRUN_WORKSPACE=" .. H.realpath(ws) .. "\n", 1, true), env)
  T.ok(env:find("SPEEDRUN_PROMPT_FILE=" .. H.realpath(nd) .. "/prompt.md\n", 1, true), env)
  T.ok(env:find("SPEEDRUN_TASK=1\n", 1, true), env)
  T.ok(env:find("SPEEDRUN_HYPOTHESIS_FILE=" .. H.realpath(nd) .. "/HYPOTHESIS.md\n", 1, true), env)
  T.eq(read(nd .. "/scratch/pwd.txt"), H.realpath(ws) .. "\n", "run in the workspace")
  local prompt = read(nd .. "/scratch/prompt.md")
  T.eq(prompt, read(nd .. "/prompt.md"), "the prompt file is the node's prompt.md")
  for _, want in ipairs {"# Task description", "# Task 1", "# Ideas", task.rules[1], "boom at line 3", INSTRUCTION,
                         "editing the files directly", "$SPEEDRUN_HYPOTHESIS_FILE", "local"} do
    T.ok(prompt:find(want, 1, true), "prompt has " .. want)
  end
  T.ok(not prompt:find("SEARCH", 1, true) and not prompt:find("<<<<<<<", 1, true), "no SEARCH/REPLACE format")
  local log = read(nd .. "/coder.log")
  T.ok(log:find("raise the learning rate", 1, true) and log:find("on stderr", 1, true), log)
  T.ok(res.replies[1]:find("on stderr", 1, true), "the log's tail is the reply")
end)

T.case("a new .cu file in a new folder and NOTES.md: edits added; hypothesis = the notes' first paragraph", function()
  local res, ws, nd = run_shim("cu", [[
mkdir kernels && echo "__global__ void k() {}" > kernels/k.cu
printf '\nfuse the kernels\nof the MLP\n\nmore notes\n' > NOTES.md
echo "ignored output"]])
  T.eq(res.ok, true, tostring(res.error))
  T.eq(json.encode(res.edits), json.encode({{path = "kernels/k.cu", kind = "added"}}))
  T.eq(res.hypothesis, "fuse the kernels\nof the MLP")
  T.ok(read(nd .. "/NOTES.md") and not read(ws .. "/NOTES.md"), "NOTES.md moved to the node folder")
  T.eq(read(ws .. "/kernels/k.cu"), "__global__ void k() {}\n")
  -- HYPOTHESIS.md in the node folder comes before the output
  res = run_shim("hyp", [[echo "-- x" >> recipe.lua; echo "the output"; echo "use $SPEEDRUN_TASK" > "$SPEEDRUN_HYPOTHESIS_FILE"]])
  T.eq(res.ok, true, tostring(res.error))
  T.eq(res.hypothesis, "use 1")
  -- nothing written, nothing printed: the node's instruction
  res = run_shim("quiet", "echo '-- x' >> recipe.lua")
  T.eq(res.ok, true, tostring(res.error))
  T.eq(res.hypothesis, INSTRUCTION)
end)

T.case("refused, the workspace restored (all or nothing): .py, deleted recipe.lua, a link to /etc/passwd, writes beside", function()
  for _, c in ipairs {
    {"py", "echo '-- x' >> recipe.lua\necho 'print(1)' > train.py", "train.py: only recipe.lua and .lua, .cu and .cuh"},
    {"rm", "echo 'x = 1' > other.lua\nrm recipe.lua", "recipe.lua: deleted"},
    {"link", "echo '-- x' >> recipe.lua\nln -s /etc/passwd passwd.lua", "leading out of the workspace (to /etc/passwd)"},
    {"task", "echo hi >> TASK.md\necho '-- x' >> recipe.lua", "TASK.md: only recipe.lua"},
    {"up", "echo '-- x' >> recipe.lua\necho 'x = 1' > ../x.lua", "/v_1/x.lua: added outside the workspace"},
    {"upup", "echo '-- x' >> recipe.lua\necho 'x = 1' > ../../y.lua", "/y.lua: added outside the workspace"},
    {"emptydir", "echo '-- x' >> recipe.lua\nmkdir stuff", "stuff/: a new directory with no code file"},
    {"exit", "echo '-- x' >> recipe.lua\nexit 3", "the coder command failed (exited 3)"},
  } do
    local res, ws, nd = run_shim(c[1], c[2])
    T.eq(res.ok, false, c[1])
    T.ok(tostring(res.error):find(c[3], 1, true), c[1] .. ": " .. tostring(res.error))
    T.eq(#res.edits, 0, c[1] .. ": no edit")
    restored(ws, c[1])
    T.ok(read(nd .. "/coder.log"), c[1] .. ": coder.log")
    if c[1] == "up" then T.ok(not read(nd .. "/x.lua"), "the file beside the workspace removed") end
  end
end)


T.case("no change is an error; a command past --coder-timeout is killed (its children too) and fails", function()
  local res, ws = run_shim("nothing", "echo thinking")
  T.eq(res.ok, false)
  T.ok(tostring(res.error):find("no change", 1, true), tostring(res.error))
  restored(ws, "nothing")
  local t0 = H.now()
  local nd
  -- the child would leave a file 3 s in (its pid says nothing from here: the command has a PID namespace)
  res, ws, nd = run_shim("sleep", "echo '-- x' >> recipe.lua\n(sleep 3; echo alive > \"$SPEEDRUN_SCRATCH/alive\") &\nwait", 1)
  T.ok(H.now() - t0 < 15, "killed soon after the limit: " .. (H.now() - t0))
  T.eq(res.ok, false)
  T.ok(tostring(res.error):find("timeout", 1, true), tostring(res.error))
  restored(ws, "sleep")
  while H.now() - t0 < 4 do os.execute("sleep 0.2") end
  T.ok(not H.stat(nd .. "/scratch/alive"), "the command's child is gone")
end)

-- task 1's records at micro scale on this CPU (times made up: only the FSR's arithmetic uses them)
local CALIB = W.tmp .. "/calib.json"
local RECS = {}
for i, ms in ipairs {2000, 1000} do
  RECS[("record_%02d"):format(i)] = {mean_ms = ms, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512,
                                     val_loss_mean = 10.5, val_loss_std = 0.02}
end
write(CALIB, json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = RECS}}}))

T.case("speedrun agent run --coder-cmd: the copied record 2 is a valid node; resume keeps the command", function()
  local out = W.tmp .. "/run"
  os.execute("rm -rf " .. sh(out))
  -- the first call copies record 2's recipe; later ones (a file outside the run counts them) change nothing
  local count = W.tmp .. "/rec2.count"
  os.remove(count)
  local cmd = shim("rec2", "echo 'take record 2'\necho x >> " .. sh(count) .. "\n[ \"$(wc -l < " .. sh(count)
    .. ")\" -gt 1 ] || cp " .. sh(REC2) .. " recipe.lua")
  local rc, text = W.run("agent run --task 1 --coder-cmd " .. sh(cmd) .. SEE .. " --coder-timeout 60 --scale micro --max-nodes 1"
    .. " --n-initial 1 --quiet --device cpu --threads 1 --steps 3 --time-limit 60 " .. W.data .. " --calibration "
    .. sh(CALIB) .. " --out " .. sh(out))
  T.eq(rc, 0, text)
  local res = json.decode(assert(read(out .. "/v_1/results.json"), "v_1 finished\n" .. text))
  T.eq(res.status, "valid", json.encode(res))
  T.eq(res.hypothesis, "take record 2")
  T.eq(read(out .. "/v_1/workspace/recipe.lua"), REC2_SRC, "the node's recipe is record 2's")
  local cfg = json.decode(read(out .. "/config.json"))
  T.eq(cfg.coder_cmd, cmd)
  T.eq(cfg.coder_timeout, 60)
  T.eq(cfg.llm_summary, false, "no model: no LLM summary")
  -- resume: v_2 runs the same command, which changes nothing the second time
  rc, text = W.run("agent resume " .. sh(out) .. " --max-nodes 2 --quiet")
  T.eq(rc, 0, text)
  res = json.decode(assert(read(out .. "/v_2/results.json"), "v_2 finished\n" .. text))
  T.eq(res.status, "coder_error")
  T.ok(res.failure.message:find("no change", 1, true), res.failure.message)
  T.ok((read(out .. "/v_2/coder.log") or ""):find("take record 2", 1, true), "the command ran again")
end)

T.case("the command sees the checkout's tasks/ and hints/ empty (the answers), or the run does not start", function()
  local answers = extcoder.answers()
  T.ok(answers[1]:match("/tasks$") and answers[2]:match("/hints$") and answers[3]:match("/tests$"), table.concat(answers, " "))
  if not HIDING then
    T.eq(extcoder.new {cmd = "true"}, nil)
    local _, why = extcoder.new {cmd = "true"}
    T.ok(why:find("cannot hide them", 1, true) and why:find("--coder-see-all", 1, true), why)
    local rc, text = W.run("agent run --task 1 --coder-cmd true --scale micro --max-nodes 1 --quiet --device cpu "
      .. W.data .. " --calibration " .. sh(CALIB) .. " --out " .. sh(W.tmp .. "/nohide"))
    T.ok(rc ~= 0 and text:find("cannot hide them", 1, true), text)
    print("  (this system has no user or mount namespaces: " .. tostring(NO_HIDING) .. ")")
    return
  end
  local git = H.source_dir() .. "/.git"   -- a checkout's history holds the records too (`git show`)
  local res, _, nd = run_shim("peek", "ls " .. sh(answers[1]) .. " " .. sh(answers[2]) .. " > \"$SPEEDRUN_SCRATCH/seen.txt\" 2>&1\n"
    .. "ls -A " .. sh(git) .. " >> \"$SPEEDRUN_SCRATCH/seen.txt\" 2>&1\n"
    .. "cat " .. sh(answers[1] .. "/record_02/recipe.lua") .. " > recipe.lua 2>/dev/null\n"
    .. "ls /proc | grep -c '^[0-9]' >> \"$SPEEDRUN_SCRATCH/seen.txt\"\necho 'peek' >> recipe.lua")
  local seen = read(nd .. "/scratch/seen.txt") or ""
  T.ok(not seen:find("record_02", 1, true) and not seen:find("task_01", 1, true), "tasks/ and hints/ listed empty:\n" .. seen)
  T.ok(not seen:find("objects", 1, true), "the git history hidden:\n" .. seen)
  T.ok(tonumber(seen:match("(%d+)%s*$") or "99") < 10, "a /proc of the command's own processes:\n" .. seen)
  T.ok(res.ok, tostring(res.error))
  local ws = nd .. "/workspace"
  T.eq(read(ws .. "/recipe.lua"), "peek\n", "record 2's recipe could not be read")
  T.ok(H.stat(answers[1] .. "/record_02/recipe.lua"), "the checkout itself is untouched")
end)

T.case("speedrun agent run: --coder-cmd and --coder-timeout checked", function()
  for _, c in ipairs {
    {"agent run --task 1 --coder-cmd", "option --coder-cmd needs a value"},
    {"agent run --task 1 --coder-cmd true --coder-timeout 0", "--coder-timeout must be a number above 0"},
    {"agent run --task 1", "run needs --model (or --coder-cmd)"},
  } do
    local rc, text = W.run(c[1])
    T.eq(rc, 2, c[1] .. "\n" .. text)
    T.ok(text:find(c[2], 1, true), c[1] .. ": " .. text)
  end
  local rc, text = W.run("agent run --help")
  T.ok(rc == 0 and text:find("--coder-cmd CMD", 1, true), text)
end)

T.done()
