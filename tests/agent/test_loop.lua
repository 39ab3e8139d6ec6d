-- The agent loop (lua/speedrun/agent/) with a scripted chat and coder (agent/fakes.lua) on task 1
-- at micro scale on the CPU (synthetic shards, a hand-made micro calibration, one run of 3 steps
-- per node): the best node is record 2's recipe and valid; failing recipes (crash, endless loop,
-- os.execute) fail with their kind and the search goes on; budgets stop the run; a SIGKILLed run
-- resumed ends with the same tree as an uninterrupted one; the report is well-formed HTML naming
-- every node; `speedrun agent` checks its options. docs/agent.md.
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local data = require "speedrun.data"
local process = require "speedrun.process"
local loop = require "speedrun.agent.loop"
local journal = require "speedrun.agent.journal"
local report = require "speedrun.agent.report"
local F = dofile("agent/fakes.lua")

local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_loop"
local sh = T.shell_quote
os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp .. "/data"))
assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", T.token_stream(20000, 1)))
assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", T.token_stream(8000, 2)))

local read = T.read
local write = T.write
-- task 1's records at micro scale on this CPU (times made up: only the FSR's arithmetic uses them)
local CALIB = tmp .. "/calib.json"
local REC = {mean_ms = 2000, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512, val_loss_mean = 10.5, val_loss_std = 0.02}
local REC2 = {mean_ms = 1000, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512, val_loss_mean = 10.5, val_loss_std = 0.02}
write(CALIB, json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = {record_01 = REC, record_02 = REC2}}}}))

local function config(search, budgets, extra)
  local c = {task = 1, scale = "micro", runs = 1, seed = 3, hint = "1", scaffold = "aide", llm_summary = false,
             search = search, budgets = budgets,
             score_args = {"--device", "cpu", "--threads", "1", "--steps", "3", "--time-limit", "15", "--train-files",
                           tmp .. "/data/syn_train_*.bin", "--val-files", tmp .. "/data/syn_val_*.bin", "--calibration", CALIB}}
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function script_of(t)
  local s = {}
  for k, v in pairs(t) do s[k] = v end
  return s
end

-- runs the loop in this process with the fakes; returns the stop reason, the journal, the coder's calls
local function run_here(dir, cfg, script, usage)
  local chat = F.chat(script, "..", usage)
  local seen = {}
  local coder = {run = function(a) seen[#seen + 1] = a return F.coder.run(a) end}
  local reason, J = loop.start(dir, cfg, {chat = chat, coder = coder, quiet = true})
  return reason, J, seen
end

-- tables compared through their JSON text (keys sorted)
local function same(a, b, msg) T.eq(json.encode(a), json.encode(b), msg) end

local REC2_SRC = read("../tasks/record_02/recipe.lua")

T.case("a scripted run: record 2 found and valid; crash, loop, os.execute fail with their kind; the search goes on", function()
  local dir = tmp .. "/run-main"
  local reason, J, seen = run_here(dir, config({n_initial = 3, debug_prob = 1, max_bug_depth = 3}, {max_nodes = 5}),
                                   {[1] = "rec2", [2] = "crash", [3] = "exec", [4] = "loop", [5] = "rec2"})
  T.ok(reason:find("max_nodes", 1, true), reason)
  T.eq(J:count(), 5)
  local st = {}
  for id = 1, 5 do st[id] = J.nodes[id].results.status end
  T.eq(st[1], "valid")
  T.eq(st[2], "lua_error")
  T.eq(st[3], "rejected")
  T.eq(st[4], "timeout")
  T.eq(st[5], "valid")
  T.ok(J.nodes[3].results.failure.message:find("os.execute", 1, true), "the rule named")
  local best = loop.best(J)
  T.ok(best.id == 1 or best.id == 5, "best is a record-2 node: v_" .. best.id)
  T.eq(best.results.metrics.is_valid, true)
  T.eq(read(J:workspace(best.id) .. "/recipe.lua"), REC2_SRC, "best recipe = record 2's")
  T.ok(type(best.results.metrics.fsr) == "number" and type(best.results.metrics.train_time_ms) == "number", "metrics")
  -- the tree on disk: meta of a debug node, bug depths, a failure kind in the bug history
  local m4 = journal.read_json(dir .. "/v_4/meta.json")
  T.eq(m4.kind, "debug")
  T.ok(m4.parent == 2 or m4.parent == 3, "v_4 debugs a failed draft")
  T.eq(m4.bug_depth, 2)
  T.eq(m4.stable_ancestor, 0)
  same(journal.read_json(dir .. "/v_0/meta.json").children, {1, 2, 3})
  T.ok(#seen[4].bug_history >= 1 and seen[4].bug_history[1].summary:find("status: ", 1, true), "bug history sent")
  T.ok(seen[1].task:find("# Task 1", 1, true) and seen[1].hint and #seen[1].files["recipe.lua"] > 0, "prompt fields")
  T.ok(read(dir .. "/v_1/llm.jsonl"):find('"response"', 1, true), "the node's LLM log")
  T.ok(read(dir .. "/v_1/score/score.json") and read(dir .. "/v_1/score/run1/log.txt"), "the run's logs")
  T.ok(J.nodes[2].results.outcome_summary:find("deliberate crash", 1, true), "first error line in the summary")
  T.eq(J.state.total_tokens, 5 * 150)
end)

T.case("a start recipe that cannot be scored stops the run before any LLM call; resume scores it again", function()
  local dir, cal = tmp .. "/run-nocal", tmp .. "/calib-empty.json"
  write(cal, json.encode({schema = "speedrun.calibration/1", entries = {}}))
  local cfg = config({n_initial = 1}, {max_nodes = 1})
  for i, a in ipairs(cfg.score_args) do if a == CALIB then cfg.score_args[i] = cal end end
  local chat, calls = F.chat({[1] = "rec2"}, "..")
  local ok, err = pcall(loop.start, dir, cfg, {chat = chat, coder = F.coder, quiet = true})
  T.ok(not ok and tostring(err):find("could not be scored", 1, true) and tostring(err):find("no calibration for record_0", 1, true),
       tostring(err))
  T.eq(#calls, 0, "no LLM call")
  T.eq(journal.read_json(dir .. "/v_0/results.json").status, "score_error")
  write(cal, read(CALIB))   -- the calibration fixed: resume scores v_0 and goes on
  local reason, J = loop.resume(dir, {chat = F.chat({[1] = "rec2"}, ".."), coder = F.coder, quiet = true}, {})
  T.ok(reason:find("max_nodes", 1, true), reason)
  T.eq(J.nodes[0].results.status, "valid", "v_0 scored again")
  T.eq(J:count(), 1)
end)

T.case("budgets stop the run at the limit, mid-node included; resume with a raised budget goes on", function()
  local dir = tmp .. "/run-tokens"
  local reason, J = run_here(dir, config({n_initial = 3}, {max_nodes = 5, max_tokens = 300}), {[1] = "rec2", [2] = "rec2", [3] = "rec2"})
  T.ok(reason:find("^max_tokens"), reason)
  T.eq(J:count(), 2)
  T.eq(journal.read_json(dir .. "/state.json").stopped.reason, reason)
  local r1 = read(dir .. "/v_1/results.json")
  local chat = F.chat({[1] = "rec2", [2] = "rec2", [3] = "rec2"}, "..")
  local reason2, J2 = loop.resume(dir, {chat = chat, coder = F.coder, quiet = true}, {budgets = {max_tokens = 10000, max_nodes = 3}})
  T.ok(reason2:find("max_nodes", 1, true), reason2)
  T.eq(J2:count(), 3)
  T.eq(read(dir .. "/v_1/results.json"), r1, "a finished node is not run again")
  -- refused in the middle of a node (the summary call): the node is dropped, the reason recorded
  dir = tmp .. "/run-midnode"
  reason, J = run_here(dir, config({n_initial = 3}, {max_tokens = 150}, {llm_summary = true}), {[1] = "rec2"})
  T.ok(reason:find("^max_tokens"), reason)
  T.eq(J:count(), 0)
  T.ok(not read(dir .. "/v_1/meta.json"), "the unfinished node is gone")
  -- GPU seconds: v_0's score already spends more than the limit
  dir = tmp .. "/run-gpu"
  reason, J = run_here(dir, config({n_initial = 3}, {max_gpu_seconds = 0.01}), {[1] = "rec2"})
  T.ok(reason:find("^max_gpu_seconds"), reason)
  T.eq(J:count(), 0)
  dir = tmp .. "/run-wall"
  reason, J = run_here(dir, config({n_initial = 3}, {max_wall_seconds = 0.01}), {[1] = "rec2"})
  T.ok(reason:find("^max_wall_seconds"), reason)
  T.eq(J:count(), 0)
  -- cost: 150 tokens at $1000 per million prompt tokens is $0.1 per node
  dir = tmp .. "/run-cost"
  reason, J = run_here(dir, config({n_initial = 3}, {max_cost = 0.15}, {prices = {prompt = 1000, completion = 0}}), {[1] = "rec2", [2] = "rec2"})
  T.ok(reason:find("^max_cost"), reason)
  T.eq(J:count(), 2)
end)

-- the tree as a comparable table: per node parent, kind, iteration, status, bug depth, children, recipe
local function tree(dir)
  local J = assert(journal.open(dir, true))
  local out = {}
  for _, n in ipairs(J:list()) do
    out[#out + 1] = {n.id, n.meta.parent, n.meta.kind, n.meta.iteration, n.results and n.results.status,
                     n.meta.bug_depth, table.concat(n.meta.children, ","), read(J:workspace(n.id) .. "/recipe.lua")}
  end
  return out
end

local KILL_SCRIPT = {["1"] = "crash", ["2"] = "exec", ["3"] = "rec2", ["4"] = "crash", ["5"] = "rec2"}

local function spawn_agent(mode, dir)
  local spec = tmp .. "/spec-" .. mode .. "-" .. dir:match("[^/]+$") .. ".json"
  write(spec, json.encode({mode = mode, dir = dir, script = KILL_SCRIPT,
                           config = config({n_initial = 2, debug_prob = 1, max_bug_depth = 3}, {max_nodes = 5})}))
  return process.spawn {argv = {exe, "run", "agent/fake_agent.lua", spec}}
end

local function wait_exit(p)
  local out = {}
  while true do
    for _, c in ipairs(p:read(0.1) or {}) do out[#out + 1] = c.data end
    local how, code = p:wait()
    if how then return how, code, table.concat(out) end
  end
end

-- kills the run once `file` exists plus `delay` seconds
local function kill_after(p, file, delay)
  local t0 = H.now()
  while not read(file) and H.now() - t0 < 60 do p:read(0.05) end
  process.sleep(delay)
  p:kill(9)
  return wait_exit(p)
end

T.case("SIGKILL mid-run, then resume: the same final tree as an uninterrupted run; finished nodes kept", function()
  local A, B = tmp .. "/run-a", tmp .. "/run-b"
  local how, code, out = wait_exit(spawn_agent("start", A))
  T.eq(how .. code, "exited0", out)
  T.eq(#tree(A), 6)
  how = kill_after(spawn_agent("start", B), B .. "/v_1/results.json", 0.4)
  T.eq(how, "signaled")
  local before = read(B .. "/v_1/results.json")
  how = kill_after(spawn_agent("resume", B), B .. "/v_3/results.json", 0.7)
  T.eq(how, "signaled")
  T.ok(#tree(B) < 6, "killed before the end")
  how, code, out = wait_exit(spawn_agent("resume", B))
  T.eq(how .. code, "exited0", out)
  T.eq(read(B .. "/v_1/results.json"), before, "v_1 not run again")
  same(tree(B), tree(A), "the resumed tree")
  T.ok(journal.read_json(B .. "/state.json").sessions >= 3, "three sessions")
end)

-- well-formed HTML: every tag closed in order, no stray '<' in the text
local VOID = {meta = true, br = true, hr = true, img = true, input = true, link = true}
local function well_formed(html)
  local stack, tags = {}, 0
  for close, name, rest in html:gmatch("<(/?)([%w!]+)([^<>]*)>") do
    tags = tags + 1
    name = name:lower()
    if name:sub(1, 1) == "!" or VOID[name] or rest:sub(-1) == "/" then -- nothing to close
    elseif close == "" then stack[#stack + 1] = name
    else
      if stack[#stack] ~= name then return false, "</" .. name .. "> closes <" .. tostring(stack[#stack]) .. ">" end
      stack[#stack] = nil
    end
  end
  local _, lt = html:gsub("<", "")
  if lt ~= tags then return false, "a '<' that opens no tag" end
  return #stack == 0, "unclosed: " .. table.concat(stack, ",")
end

T.case("report: well-formed HTML with every node, the SVG tree and summary.json", function()
  local dir = tmp .. "/run-main"
  local rc = os.execute(sh(exe) .. " agent report " .. sh(dir) .. " > " .. sh(tmp .. "/report.txt") .. " 2>&1")
  T.ok(rc, read(tmp .. "/report.txt"))
  local html = read(dir .. "/report.html")
  T.ok(well_formed(html))
  T.ok(select(2, well_formed(html .. "<div>")) ~= nil and not well_formed("<p><b>x</p></b>"), "the checker catches a bad page")
  for id = 0, 5 do
    T.ok(html:find('id="node-' .. id .. '"', 1, true), "section of v_" .. id)
    T.ok(html:find('id="svg-node-' .. id .. '"', 1, true), "circle of v_" .. id)
  end
  T.ok(html:find("<svg", 1, true) and html:find('class="add"', 1, true), "tree and a diff")
  local S = json.decode(read(dir .. "/summary.json"))
  T.eq(#S.nodes, 6)
  T.eq(S.best.is_valid, true)
  T.ok(type(S.best.fsr) == "number", "best FSR")
  same(report.diff("a\nb\n", "a\nc\n"), {{" ", "a"}, {"+", "c"}, {"-", "b"}})
end)

local function agent(args)
  local ok, how, code = os.execute(sh(exe) .. " agent " .. args .. " > " .. sh(tmp .. "/out.txt") .. " 2>&1")
  return how == "exit" and code or 128 + code, read(tmp .. "/out.txt")
end

T.case("speedrun agent: options checked (usage error 2), --help, the missing pieces named", function()
  for _, c in ipairs {
    {"run --task x --model m --base-url u", "--task must be a positive integer"},
    {"run --task 1 --model m --base-url u --max-nodes 0", "--max-nodes must be a positive integer"},
    {"run --task 1 --model m --base-url u --max-tokens 2.5", "--max-tokens must be a positive integer"},
    {"run --task 1 --model m --base-url u --seed -1", "--seed must be an integer >= 0"},
    {"run --task 1 --model m --base-url u --max-wall-seconds abc", "--max-wall-seconds must be a number above 0"},
    {"run --task 1 --model m --base-url u --debug-prob 2", "--debug-prob must be a number between 0 and 1"},
    {"run --task 1 --model m --base-url u --scaffold nope", "unknown scaffold"},
    {"run --task 1 --base-url u", "run needs --model"},
    {"run --task 1 --model m --base-url u --bogus 1", "unknown option --bogus"},
    {"resume", "resume needs one run folder"},
    {"resume " .. sh(tmp) .. " --max-nodes -2", "--max-nodes must be a positive integer"},
    {"report", "report needs one run folder"},
    {"frob", "unknown command"},
  } do
    local rc, out = agent(c[1])
    T.eq(rc, 2, c[1] .. "\n" .. out)
    T.ok(out:find(c[2], 1, true), c[1] .. ": " .. out)
  end
  for _, c in ipairs {"--help", "run --help", "resume --help", "report --help"} do
    local rc, out = agent(c)
    T.eq(rc, 0, c)
    T.ok(out:find("usage: speedrun agent", 1, true), out)
  end
  local rc, out = agent("report " .. sh(tmp .. "/data"))
  T.eq(rc, 1, out)
  T.ok(out:find("no agent run", 1, true), out)
  if not pcall(require, "speedrun.agent.llm") then
    rc, out = agent("run --task 1 --model m --base-url http://127.0.0.1:9 --out " .. sh(tmp .. "/nomodule"))
    T.eq(rc, 1, out)
    T.ok(out:find("speedrun.agent.llm", 1, true), out)
    T.ok(not read(tmp .. "/nomodule/config.json"), "nothing started")
  end
end)

T.done()
