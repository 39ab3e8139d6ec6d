-- speedrun.agent.extcoder: an external coder for the agent loop (docs/agent.md "External coders"):
-- any command-line coding agent, given as a shell command line (`--coder-cmd CMD`), run in the
-- node's workspace with the coder's prompt in a Markdown file, its edits taken from the workspace
-- as it left it. Same interface as speedrun.agent.coder: the loop calls run(args) per node.
--   local ext = extcoder.new{cmd = "aider ...", timeout = 1800}
--   ext.run{dir = NODE/workspace, task, rules, files, hint, bug_history, instruction}
--     -> {ok, edits = {{path, kind = "modified"|"added"}}, rounds = 1, error, replies = {log tail},
--         hypothesis, usage (zeros: unknown), exit, seconds}
-- The node folder gets prompt.md, coder.log (the command's stdout and stderr) and scratch/; a change
-- other than to code files (tree.judge), a failed, killed or empty run restores the workspace.
-- The command sees the checkout's tasks/, hints/, tests/ and .git/ empty (M.answers: every record's
-- recipe and every hint level are the tasks' answers; speedrun.process.spawn's `hide`), unless
-- new{hide = false}.
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local json = require "speedrun.json"
local P = require "speedrun.agent.coder_prompt"
local tree = require "speedrun.agent.extcoder_tree"

local M = {}
local fmt = string.format
local sh, read, write = tree.sh, tree.read, tree.write

M.DEFAULT_TIMEOUT = 1800
M.GRACE = 5            -- seconds between SIGTERM and SIGKILL, and for pipes after the command exits
M.TAIL = 4000          -- bytes of coder.log returned as the reply
-- files of the node folder the command may write (besides the workspace and scratch/)
M.NODE_FILES = {["NOTES.md"] = true, ["HYPOTHESIS.md"] = true}

M.HOW = [[# How to work
You are a coding agent working in the workspace of this version (your current directory, also
$SPEEDRUN_WORKSPACE). Make your change by editing the files directly: recipe.lua, and new or changed
.lua, .cu and .cuh files of the workspace. Nothing else may change: another kind of file, a deleted
file, a symbolic link or a write outside the workspace fails the whole change, and the workspace is
put back as it was. Scratch files go in $SPEEDRUN_SCRATCH. The host scores the workspace after you
finish (you need not run the training); you have %d seconds.

Write your hypothesis (the change and why it should help, in one or two sentences) as the first
paragraph of $SPEEDRUN_HYPOTHESIS_FILE.]]

-- s with every plain occurrence of a replaced by b
local function replace(s, a, b)
  local out, i = {}, 1
  while true do
    local j, k = s:find(a, i, true)
    if not j then break end
    out[#out + 1] = s:sub(i, j - 1) .. b
    i = k + 1
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

-- the SEARCH/REPLACE coder's wording turned to direct edits
local REWORDS = {
  {P.FORMAT, ""},
  {"Then implement it as SEARCH/REPLACE blocks.", "Then implement it by editing the files."},
  {"as SEARCH/REPLACE blocks.", "by editing the files."},
  {"Reply with SEARCH/REPLACE blocks.", "Edit the files directly."},
  {"reply with your changes.", "make your changes."},
}

-- the coder's prompt (speedrun.agent.coder_prompt) as one Markdown document for a command
function M.render_prompt(args, timeout)
  local msgs = P.prompt(args)
  local text = "# Role\n" .. msgs[1].content .. "\n\n" .. msgs[2].content
  for _, r in ipairs(REWORDS) do text = replace(text, r[1], r[2]) end
  text = text:gsub("%s+$", "")
  return text .. "\n\n" .. fmt(M.HOW, math.floor(timeout)) .. "\n"
end

-- the first paragraph of the first of NODE/HYPOTHESIS.md, NODE/NOTES.md that has one
local function hypothesis_file(node)
  for _, name in ipairs {"HYPOTHESIS.md", "NOTES.md"} do
    local text = read(node .. "/" .. name)
    local para = text and text:gsub("^%s+", ""):match("^(.-)\n%s*\n") or text
    para = para and para:gsub("^%s+", ""):gsub("%s+$", "")
    if para and para ~= "" then return #para > 1200 and para:sub(1, 1200) .. "..." or para end
  end
end

local function first_line(s)
  for line in tostring(s or ""):gmatch("[^\n]+") do
    if line:match("%S") then return (line:gsub("^%s+", ""):gsub("%s+$", "")) end
  end
end

-- NOTES.md and HYPOTHESIS.md the command left at the top of the workspace go to the node folder
local function move_notes(ws, node, snap)
  for name in pairs(M.NODE_FILES) do
    local st = H.stat(ws .. "/" .. name, true)
    if st and st.type == "file" and not snap.entries[name] then
      os.rename(ws .. "/" .. name, node .. "/" .. name)
    end
  end
end

-- the task number from the workspace's task.json (written by `speedrun task init`)
local function task_id(ws)
  local t = json.decode(read(ws .. "/task.json") or "null")
  return type(t) == "table" and t.task and tostring(t.task) or ""
end

local function drain(p, log, out)
  for _, c in ipairs(p:read(0.2) or {}) do
    log:write(c[2])
    if c[1] == "stdout" and #out.first < 8192 then out.first = out.first .. c[2] end
  end
  log:flush()
end

-- runs the command line: {cmd, cwd, env, timeout, log, hide} -> {how, code, killed, seconds, first (stdout head)}
function M.execute(o)
  local log = assert(io.open(o.log, "ab"))
  log:write(fmt("$ %s\n(in %s, time limit %gs, started %s)\n", o.cmd, o.cwd, o.timeout, os.date("!%Y-%m-%dT%H:%M:%SZ")))
  local t0, out = H.now(), {first = ""}
  local p = process.spawn {argv = {"/bin/sh", "-c", o.cmd}, env = o.env, cwd = o.cwd, hide = o.hide}
  local pid, exited, termed = p:pid(), nil, nil
  while true do
    drain(p, log, out)
    if not out.how then
      out.how, out.code = p:wait()
      if out.how then exited = H.now() end
    end
    if out.how and (not p:open() or H.now() - exited > M.GRACE) then break end
    if not out.how and not out.killed and (H.now() - t0 > o.timeout or process.interrupted()) then
      out.killed = process.interrupted() and "interrupted" or "timeout"
      p:kill(15)
      termed = H.now()
    end
    if termed and not out.how and H.now() - termed > M.GRACE then p:kill(9) end
  end
  if p:open() then os.execute(fmt("kill -9 -- -%d 2>/dev/null", pid)) end  -- what is left of its process group
  p:close()
  out.seconds = H.now() - t0
  log:write(fmt("\n(%s %s after %.1fs%s)\n", out.how, tostring(out.code), out.seconds,
                out.killed and (", killed: " .. out.killed) or ""))
  log:close()
  return out
end

-- the outcome checked: nil or the error that fails the node (the workspace is then restored)
local function verdict(o, run, edits, problems, beside)
  if run.killed == "timeout" then
    return fmt("timeout: the coder command ran past %gs and was killed", o.timeout)
  elseif run.killed then return "interrupted: the coder command was stopped"
  elseif run.how ~= "exited" or run.code ~= 0 then
    return fmt("the coder command failed (%s %s)", tostring(run.how), tostring(run.code))
  end
  for _, b in ipairs(beside) do
    problems[#problems + 1] = fmt("%s: %s outside the workspace", b.path, b.what)
  end
  if #problems > 0 then
    return fmt("refused: %s%s", problems[1], #problems > 1 and fmt(" (and %d more: %s)", #problems - 1,
      table.concat(problems, "; ", 2)) or "")
  end
  if #edits == 0 then return "no change: the coder command left the workspace's code files as they were" end
end

-- new or changed entries beside the workspace: in the node folder (removed) and in the run folder
local function beside_changes(node, before)
  local out = {}
  for _, c in ipairs(tree.outside(before.node, node, before.node_skip)) do
    out[#out + 1] = {path = node .. "/" .. c.name, what = c.what}
    if c.what == "added" then os.execute("rm -rf " .. sh(node .. "/" .. c.name)) end
  end
  local run_dir = node:match("^(.*)/[^/]+$")
  for _, c in ipairs(run_dir and tree.outside(before.run, run_dir) or {}) do
    out[#out + 1] = {path = run_dir .. "/" .. c.name, what = c.what}
  end
  return out
end

local function failed(msg) return {ok = false, edits = {}, rounds = 1, error = msg, replies = {},
  usage = {prompt_tokens = 0, completion_tokens = 0, total_tokens = 0}} end

-- one node: o = {cmd, timeout}, args = the loop's coder arguments (args.dir: NODE/workspace)
function M.run_node(o, args)
  local ws = args.dir
  local node = ws:match("^(.*)/[^/]+$") or "."
  local snap, err = tree.snapshot(ws)
  if not snap then return failed("extcoder: " .. err) end
  local files = {prompt = node .. "/prompt.md", log = node .. "/coder.log", scratch = node .. "/scratch",
                 hypothesis = node .. "/HYPOTHESIS.md"}
  write(files.prompt, M.render_prompt(args, o.timeout))
  H.mkdir(files.scratch)
  local skip = {workspace = true, scratch = true, ["coder.log"] = true}
  for name in pairs(M.NODE_FILES) do skip[name] = true end
  local run_dir = node:match("^(.*)/[^/]+$")
  local before = {node = tree.listing(node, skip), node_skip = skip, run = run_dir and tree.listing(run_dir) or {}}
  local env = {SPEEDRUN_PROMPT_FILE = H.realpath(files.prompt), SPEEDRUN_WORKSPACE = snap.real, SPEEDRUN_TASK = task_id(ws),
               SPEEDRUN_NODE_DIR = H.realpath(node), SPEEDRUN_SCRATCH = H.realpath(files.scratch),
               SPEEDRUN_HYPOTHESIS_FILE = H.realpath(node) .. "/HYPOTHESIS.md", SPEEDRUN_CODER_TIMEOUT = tostring(o.timeout)}
  local run = M.execute {cmd = o.cmd, cwd = ws, env = env, timeout = o.timeout, log = files.log, hide = o.hide}
  move_notes(ws, node, snap)
  local edits, problems = tree.judge(tree.diff(snap, ws), ws)
  local msg = verdict(o, run, edits, problems, beside_changes(node, before))
  local res = failed(msg)
  res.ok, res.seconds, res.exit = msg == nil, run.seconds, {how = run.how, code = run.code, killed = run.killed}
  res.replies = {(read(files.log) or ""):sub(-M.TAIL)}
  res.hypothesis = hypothesis_file(node) or first_line(run.first) or args.instruction
  if msg then
    local ok, rerr = tree.restore(snap, ws)
    if not ok then res.error = msg .. "; " .. rerr end
  else res.edits = edits end
  return res
end

-- the folders of the checkout an external coder must not see, real paths: the records (tasks/: record
-- N+1's recipe is task N's answer), the hints (hints/: every level), the tests (their fixtures and
-- checks of each record's mechanisms) and the git history (every file above as objects: `git show`)
M.HIDDEN = {"tasks", "hints", "tests", ".git"}
function M.answers()
  local out = {}
  for _, d in ipairs(M.HIDDEN) do
    local r = H.realpath(H.source_dir() .. "/" .. d)
    if r and H.stat(r).type == "dir" then out[#out + 1] = r end
  end
  return out
end

-- an external coder: new{cmd = shell command line, timeout = seconds (default 1800), hide = folders the
-- command sees empty (default M.answers()), false for none} -> {run = fn(args)}; nil, why when this
-- system cannot hide them (no user or mount namespaces)
function M.new(o)
  assert(type(o) == "table" and type(o.cmd) == "string" and o.cmd ~= "", "extcoder.new: cmd must be a command line")
  local hide = o.hide
  if hide == nil then hide = M.answers() end
  if hide then
    local ok, why = process.hiding()
    if not ok then
      return nil, "the external coder would see the checkout's tasks/, hints/ and history (the tasks' answers), and "
        .. "this system cannot hide them: " .. tostring(why) .. "; run where user namespaces are allowed, in "
        .. "a container holding only the run folder, or pass --coder-see-all (then the run is not the benchmark's)"
    end
  end
  local opts = {cmd = o.cmd, timeout = tonumber(o.timeout) or M.DEFAULT_TIMEOUT, hide = hide or nil}
  return {cmd = opts.cmd, timeout = opts.timeout, hide = opts.hide, run = function(args) return M.run_node(opts, args) end}
end

return M
