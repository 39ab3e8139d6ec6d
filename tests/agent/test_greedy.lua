-- The greedy scaffold (lua/speedrun/agent/greedy.lua, `--scaffold greedy`) with the scripted chat
-- and coder of agent/fakes.lua on task 1 at micro scale on the CPU: recipes differing only in
-- their step count (record 1 at 20 steps is v_0) make "faster" deterministic. A kept node is
-- committed to the branch speedrun/greedy of RUN/greedy/ and listed in RUN/results.tsv with its
-- hash; a slower one is discarded (not on the branch, its files reverted), a failed one is a
-- crash; the next node's parent is the last kept node. A SIGKILLed run, resumed, ends with the
-- same branch and TSV; a branch or TSV left behind the journal is repaired, once. docs/agent.md.
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local data = require "speedrun.data"
local process = require "speedrun.process"
local loop = require "speedrun.agent.loop"
local greedy = require "speedrun.agent.greedy"
local F = dofile("agent/fakes.lua")

if not greedy.have_git() then T.skip("no git on this machine") end

local exe = arg[-1]
local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_greedy"
local sh = T.shell_quote
os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp .. "/data"))
assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", T.token_stream(20000, 1)))
assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", T.token_stream(8000, 2)))

local read = T.read
local write = T.write
local function cmd(c)
  local ok, out = T.run(c)
  return out, ok
end

-- task 1's records at micro scale (times made up: only the FSR uses them); target 10.9
local CALIB = tmp .. "/calib.json"
local REC = {mean_ms = 2000, std_ms = 10, runs = 3, target_val_loss = 10.9, val_tokens = 512, val_loss_mean = 10.5, val_loss_std = 0.02}
write(CALIB, json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = {record_01 = REC, record_02 = REC}}}}))

-- no --steps: each recipe's own micro step count decides its train time (~100 ms a step)
local function config(max_nodes)
  return {task = 1, scale = "micro", runs = 1, seed = 1, hint = "1", scaffold = "greedy", llm_summary = false,
          search = {max_bug_depth = 0}, budgets = {max_nodes = max_nodes},
          score_args = {"--device", "cpu", "--threads", "1", "--time-limit", "20", "--train-files",
                        tmp .. "/data/syn_train_*.bin", "--val-files", tmp .. "/data/syn_val_*.bin", "--calibration", CALIB}}
end

-- v_1 faster than v_0 (keep), v_2 slower than v_1 (discard), v_3 crashes, v_4 faster than v_1 (keep)
local SCRIPT = {[1] = "steps6", [2] = "steps16", [3] = "crash", [4] = "steps2"}

local function git(dir, args) return cmd("git -C " .. sh(dir .. "/greedy") .. " " .. args) end

-- the branch as node ids and short hashes, oldest first
local function branch(dir)
  local ids, hashes = {}, {}
  for _, c in ipairs(greedy.branch_nodes(dir .. "/greedy")) do ids[#ids + 1] = c.id hashes[c.id] = c.hash end
  return ids, hashes
end

-- results.tsv as rows of fields (header first)
local function tsv(dir)
  local rows = {}
  for line in (read(dir .. "/results.tsv") or ""):gmatch("[^\n]+") do
    local r = {}
    for f in (line .. "\t"):gmatch("([^\t]*)\t") do r[#r + 1] = f end
    rows[#rows + 1] = r
  end
  return rows
end

-- the TSV without what differs between equal runs (hashes, times, loss digits, memory)
local function tsv_shape(dir)
  local out = {}
  for i, r in ipairs(tsv(dir)) do
    out[#out + 1] = i == 1 and table.concat(r, "|") or table.concat({r[1] == "-" and "-" or "hash", r[5], r[6]}, "|")
  end
  return table.concat(out, "\n")
end

-- the TSV's hashes are the branch's: keep rows name their node's commit, no other row has one
local function consistent(dir)
  local _, hashes = branch(dir)
  local rows = tsv(dir)
  for i = 2, #rows do
    local want = rows[i][5] == "keep" and hashes[i - 2] or "-"
    if rows[i][1] ~= want then return false, "row " .. i .. ": " .. rows[i][1] .. " ~= " .. tostring(want) end
  end
  return true
end

local function same(a, b, msg) T.eq(json.encode(a), json.encode(b), msg) end

-- a synthetic journal for the policy: specs {id, parent, status, train_time_ms, bug_depth}
local function fake_journal(specs)
  local J = {nodes = {[0] = {id = 0, meta = {parent = json.null, bug_depth = 0},
                             results = {status = "valid", metrics = {is_valid = true, train_time_ms = 2000}}}}}
  for _, s in ipairs(specs) do
    J.nodes[s[1]] = {id = s[1], meta = {parent = s[2], bug_depth = s[5] or 0},
                     results = {status = s[3], metrics = {is_valid = s[3] == "valid", train_time_ms = s[4] or json.null}}}
  end
  function J.list() local l = {} for i = 0, #J.nodes do l[#l + 1] = J.nodes[i] end return l end
  function J.count() return #J.nodes end
  return J
end

T.case("the policy: improve the last kept node, debug a failure up to max_bug_depth; the verdicts", function()
  local P = assert(greedy.new {max_bug_depth = 1, max_nodes = 6})
  local function step(specs) local s = P:next(fake_journal(specs)) return s and (s.kind .. " " .. s.parent) end
  T.eq(step({}), "draft 0")
  T.eq(step({{1, 0, "valid", 1500}}), "improve 1")
  T.eq(step({{1, 0, "valid", 1500}, {2, 1, "valid", 1700}}), "improve 1", "a slower node is discarded")
  T.eq(step({{1, 0, "valid", 1500}, {2, 1, "lua_error", nil, 1}}), "debug 2")
  T.eq(step({{1, 0, "valid", 1500}, {2, 1, "lua_error", nil, 1}, {3, 2, "timeout", nil, 2}}), "improve 1", "depth 2 > 1")
  local J = fake_journal({{1, 0, "valid", 1500}, {2, 1, "lua_error", nil, 1}, {3, 2, "valid", 1400}, {4, 3, "invalid", 1000, 1},
                          {5, 3, "valid", 1450}, {6, 3, "no_edit", nil, 1}})
  local st, best = greedy.verdicts(J)
  same(st, {[0] = "keep", "keep", "crash", "keep", "discard", "discard", "discard"}, "verdicts")
  T.eq(best, 3, "a fixed and faster debug node is the best")
  T.eq(P:next(J), nil, "max_nodes")
  T.eq(step({{1, 0, "valid", 1500}, {2, 1, "fail", 900, 1}}), "debug 2", "an invalid run is buggy: debugged")
end)

T.case("a scripted run: keep, discard (reverted), crash, keep; the branch holds exactly the kept nodes", function()
  local dir = tmp .. "/run-main"
  local reason, J = loop.start(dir, config(2), {chat = F.chat(SCRIPT, ".."), coder = F.coder, quiet = true})
  T.ok(reason:find("max_nodes", 1, true), reason)
  same((branch(dir)), {0, 1}, "v_1 kept, v_2 not")
  T.eq(read(dir .. "/greedy/recipe.lua"), read(J:workspace(1) .. "/recipe.lua"), "v_2's files reverted")
  T.ok(read(J:workspace(2) .. "/recipe.lua") ~= read(J:workspace(1) .. "/recipe.lua"), "v_2 changed the recipe")
  T.eq(git(dir, "status --porcelain"), "", "a clean work tree")
  reason, J = loop.resume(dir, {chat = F.chat(SCRIPT, ".."), coder = F.coder, quiet = true}, {budgets = {max_nodes = 4}})
  T.ok(reason:find("max_nodes", 1, true), reason)
  local st = {}
  for id = 1, 4 do st[id] = J.nodes[id].results.status end
  same(st, {"valid", "valid", "lua_error", "valid"})
  same({J.nodes[2].meta.parent, J.nodes[3].meta.parent, J.nodes[4].meta.parent}, {1, 1, 1}, "parents: the last kept node")
  same({J.nodes[1].meta.kind, J.nodes[4].meta.kind}, {"draft", "improve"})
  local ids, hashes = branch(dir)
  same(ids, {0, 1, 4}, "the branch")
  local log = git(dir, "log --format=%s speedrun/greedy")
  T.eq(select(2, log:gsub("\n", "")), 3, log)
  T.ok(log:find("v_4: Hypothesis: make node 4 a steps2 version.", 1, true), log)
  local body = git(dir, "log -1 --format=%B speedrun/greedy")
  T.ok(body:find("node: v_4", 1, true) and body:find("parent: v_1", 1, true) and body:find("train_time_ms: %d"), body)
  T.eq(read(dir .. "/greedy/recipe.lua"), read(J:workspace(4) .. "/recipe.lua"), "the head is v_4's recipe")
  local rows = tsv(dir)
  T.eq(#rows, 6)
  same(rows[1], {"commit", "val_loss", "train_time_ms", "memory", "status", "description"})
  same({rows[2][5], rows[3][5], rows[4][5], rows[5][5], rows[6][5]}, {"keep", "keep", "discard", "crash", "keep"})
  same({rows[2][1], rows[3][1], rows[4][1], rows[5][1], rows[6][1]}, {hashes[0], hashes[1], "-", "-", hashes[4]})
  T.ok(rows[3][1]:match("^%x+$") and #rows[3][1] >= 7, "a short hash")
  T.eq(rows[5][2] .. rows[5][3], "--", "a crash has no metrics")
  T.ok(tonumber(rows[3][3]) < tonumber(rows[2][3]) and tonumber(rows[4][3]) > tonumber(rows[3][3])
       and tonumber(rows[6][3]) < tonumber(rows[3][3]), "train times decide")
  T.ok(tonumber(rows[3][4]) and tonumber(rows[3][4]) > 0, "peak memory")
  T.eq(rows[4][6], "Hypothesis: make node 2 a steps16 version. FILE recipe.lua", "the hypothesis on one line")
  T.ok(consistent(dir))
end)

-- a copy of the finished main run
local function copy_main(name)
  local d = tmp .. "/" .. name
  os.execute("rm -rf " .. sh(d) .. " && cp -R " .. sh(tmp .. "/run-main") .. " " .. sh(d))
  return d
end

T.case("the branch or TSV behind the journal (killed between scoring and committing) is repaired, once", function()
  local dir = copy_main("run-repair")
  local want_ids, want_tsv = branch(dir), tsv_shape(dir)
  git(dir, "reset -q --hard HEAD~1")                        -- v_4 scored, its commit lost
  git(dir, "-c user.name=x -c user.email=x@y commit -q --allow-empty -m 'v_2: a discarded node'")
  os.remove(dir .. "/results.tsv")
  same((branch(dir)), {0, 1, 2}, "damaged")
  local deps = {chat = F.chat(SCRIPT, ".."), coder = F.coder, quiet = true}
  local reason = loop.resume(dir, deps)
  T.ok(reason:find("max_nodes", 1, true), reason)
  same((branch(dir)), want_ids, "repaired branch")
  T.eq(tsv_shape(dir), want_tsv, "rebuilt TSV")
  T.ok(consistent(dir))
  local head = git(dir, "rev-parse speedrun/greedy")
  local text = read(dir .. "/results.tsv")
  loop.resume(dir, deps)
  T.eq(git(dir, "rev-parse speedrun/greedy"), head, "idempotent: no second commit")
  T.eq(read(dir .. "/results.tsv"), text)
end)

local function spawn_agent(mode, dir)
  local spec = tmp .. "/spec-" .. mode .. ".json"
  write(spec, json.encode({mode = mode, dir = dir, script = SCRIPT, config = config(4)}))
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

T.case("SIGKILL mid-run, then resume: the same branch and TSV as the uninterrupted run", function()
  local dir = tmp .. "/run-kill"
  local p = spawn_agent("start", dir)
  local t0 = H.now()
  while not read(dir .. "/v_2/results.json") and H.now() - t0 < 60 do p:read(0.05) end
  process.sleep(0.2)
  p:kill(9)
  local how = wait_exit(p)
  T.eq(how, "signaled")
  T.ok(not read(dir .. "/v_4/results.json"), "killed before the end")
  local code, out
  how, code, out = wait_exit(spawn_agent("resume", dir))
  T.eq(how .. code, "exited0", out)
  same((branch(dir)), (branch(tmp .. "/run-main")), "the branch")
  T.eq(tsv_shape(dir), tsv_shape(tmp .. "/run-main"), "the TSV")
  T.ok(consistent(dir))
end)

T.case("speedrun agent run --scaffold greedy without git: a clear error before any work", function()
  local out, ok = cmd("env PATH=/nonexistent " .. sh(exe) .. " agent run --task 1 --model m --base-url http://127.0.0.1:9 "
    .. "--scaffold greedy --out " .. sh(tmp .. "/nogit"))
  T.ok(not ok, out)
  T.ok(out:find("needs git", 1, true), out)
  T.ok(not read(tmp .. "/nogit/config.json"), "nothing started")
  local help = cmd(sh(exe) .. " agent run --help")
  T.ok(help:find("greedy", 1, true), help)
end)

T.done()
