-- The five scaffolds of the benchmark (reference/benchmark.md §4) as presets of one search
-- (lua/speedrun/agent/search.lua), each run for 20 nodes through the loop with the real chat
-- client and coder against the scripted server (tests/agent/llm_server.js: one SEARCH/REPLACE
-- edit per reply) and a scripted score per node id (the scoring itself is test_loop's and
-- test_sweep's business; here it would cost 100 runs): node counts and kinds as each preset
-- defines, parents as the greedy / debug rules choose them, flat/tree/forest never expanding a
-- buggy node, the same tree for the same seed, and a scaffold added in Lua through
-- search.register.
local S = dofile("agent/server.lua")
S.isolate()
local T = require "speedrun.testing"
local json = require "speedrun.json"
local llm = require "speedrun.agent.llm"
local coder = require "speedrun.agent.coder"
local loop = require "speedrun.agent.loop"
local search = require "speedrun.agent.search"
local journal = require "speedrun.agent.journal"

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_scaffolds"
local sh = T.shell_quote
os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp))

-- the scripted outcome of node id: v_0 2000 ms; buggy when id % 4 == 2, else a train time that
-- mostly falls
local function outcome(id)
  if id == 0 then return true, 2000 end
  if id % 4 == 2 then return false end
  return true, 1000 - 7 * id + (id * 37) % 50
end

-- the loop's scorer replaced: the outcome by node id, no subprocess
loop.score_node = function(_, node_dir)
  local id = tonumber(node_dir:match("v_(%d+)$"))
  local ok, t = outcome(id)
  local null = json.null
  if not ok then
    local failure = {kind = "lua_error", message = "scripted failure of v_" .. id}
    return "lua_error", failure, {val_loss = null, train_time_ms = null, is_valid = false, fsr = 0}, "status: lua_error", 0
  end
  return "valid", null, {val_loss = 3.2, train_time_ms = t, is_valid = true, fsr = 0.5}, "status: valid", 0
end

local FIRST = "-- tasks/record_01/recipe.lua: NanoGPT speedrun record 1 as the benchmark ships it\n"
local TWEAK = "Hypothesis: a comment.\n\nrecipe.lua\n```lua\n<<<<<<< SEARCH\n" .. FIRST .. "=======\n" .. FIRST
  .. "-- tweak\n>>>>>>> REPLACE\n```\n"

local server = S.start()
server:script("scaf", {}, {reply = TWEAK})
local client = llm.new {base_url = server:url("scaf", "/v1"), model = "scripted"}

local function run(name, seed, extra)
  local dir = ("%s/%s-s%d"):format(tmp, name, seed)
  os.execute("rm -rf " .. sh(dir))
  local config = {task = 1, scale = "micro", runs = 1, seed = seed, hint = "1", scaffold = name, llm_summary = false,
                  search = extra or {}, budgets = {max_nodes = 20}, score_args = {}}
  local reason, J = loop.start(dir, config, {chat = client, coder = coder, quiet = true})
  return J, reason
end

-- the tree as "id:kind<parent@iteration" lines
local function shape(J)
  local out = {}
  for _, n in ipairs(J:list()) do
    if n.id > 0 then out[#out + 1] = ("%d:%s<%d@%d"):format(n.id, n.meta.kind, n.meta.parent, n.meta.iteration) end
  end
  return table.concat(out, " ")
end

-- checks every iteration's parent against the rules of benchmark.md §4, given the preset p
local function check_rules(J, p, name)
  local by_iter, order = {}, {}
  for _, n in ipairs(J:list()) do
    if n.id > 0 then
      local i = n.meta.iteration
      if not by_iter[i] then by_iter[i], order[#order + 1] = {}, i end
      table.insert(by_iter[i], n)
    end
  end
  local open, prev = 0, {}
  for k, i in ipairs(order) do
    T.eq(i, k - 1, name .. ": iterations in order")
    local kids = by_iter[i]
    local parent = kids[1].meta.parent
    for _, n in ipairs(kids) do T.eq(n.meta.parent, parent, name .. ": one open node per iteration") end
    local pn = J.nodes[parent]
    local expect_kind = parent == 0 and "draft" or (journal.buggy(pn) and "debug" or "improve")
    for _, n in ipairs(kids) do T.eq(n.meta.kind, expect_kind, name .. ": kind of v_" .. n.id) end
    local full = k < #order
    if i == 0 then
      T.eq(parent, 0)
      if full then T.eq(#kids, p.n_initial, name .. ": n_initial drafts") end
    elseif journal.buggy(pn) then
      T.ok(p.debug_prob > 0, name .. ": a buggy node expanded only with debug_prob > 0")
      T.ok(pn.meta.bug_depth >= 1 and pn.meta.bug_depth <= p.max_bug_depth, name .. ": bug depth within the limit")
      T.eq(#kids, 1, name .. ": one child when debugging")
    else
      -- the greedy top-1 by train time of {v_0, the open node, its new children}; ties to the higher id
      local best, bt
      local cand = {0, open}
      for _, c in ipairs(prev) do cand[#cand + 1] = c.id end
      for _, id in ipairs(cand) do
        local t = search.time_of(J.nodes[id])
        if t < math.huge and (not best or t < bt or (t == bt and id > best)) then best, bt = id, t end
      end
      T.eq(parent, best, name .. ": iteration " .. i .. " expands the greedy top-1")
      if full then T.eq(#kids, p.n_hypotheses, name .. ": n_hypotheses children") end
    end
    open, prev = parent, kids
  end
  return order
end

local function kinds(J)
  local c = {draft = 0, improve = 0, debug = 0}
  for _, n in ipairs(J:list()) do if n.id > 0 then c[n.meta.kind] = c[n.meta.kind] + 1 end end
  return c
end

T.case("flat (best-of-N): 20 drafts of v_0 in one iteration", function()
  local J, reason = run("flat", 1)
  T.eq(J:count(), 20)
  local k = kinds(J)
  T.eq(k.draft, 20)
  for _, n in ipairs(J:list()) do
    if n.id > 0 then T.eq(n.meta.parent, 0) T.eq(n.meta.iteration, 0) end
  end
  T.ok(reason:find("max_nodes", 1, true) or reason:find("n_iterations", 1, true), reason)
  check_rules(J, search.PRESETS.flat, "flat")
end)

for _, name in ipairs {"tree", "forest", "aide", "multi-aide"} do
  T.case(name .. ": 20 nodes; n_initial drafts, then n_hypotheses per iteration; the greedy and debug rules", function()
    local p = search.PRESETS[name]
    local J, reason = run(name, 7)
    T.eq(J:count(), 20, reason)
    T.ok(reason:find("max_nodes", 1, true), reason)
    local k = kinds(J)
    T.eq(k.draft, p.n_initial, name .. ": drafts")
    local order = check_rules(J, p, name)
    if p.debug_prob == 0 then
      T.eq(k.debug, 0, name .. " never debugs")
      -- 20 nodes = n_initial + n_hypotheses per later iteration, the last one cut short
      T.eq(#order, 1 + math.ceil((20 - p.n_initial) / p.n_hypotheses), name .. ": iterations")
    else
      T.ok(k.debug > 0, name .. ": debug nodes (debug_prob 0.5 with buggy leaves)")
    end
    local J2 = run(name, 7)
    T.eq(shape(J2), shape(J), name .. ": the same seed, the same tree")
  end)
end

T.case("the expected trees: flat 20x draft; tree 1 + 3 per iteration; forest 3 + 3; aide seeds differ", function()
  T.eq(shape(run("tree", 1)):match("^(%S+ %S+ %S+ %S+)"), "1:draft<0@0 2:improve<1@1 3:improve<1@1 4:improve<1@1")
  T.eq(shape(run("forest", 1)):match("^(%S+ %S+ %S+ %S+)"), "1:draft<0@0 2:draft<0@0 3:draft<0@0 4:improve<3@1")
  local a, b = shape(run("aide", 1)), shape(run("aide", 2))
  T.ok(a ~= b, "seeds 1 and 2 make different AIDE trees:\n" .. a .. "\n" .. b)
end)

T.case("a scaffold added in Lua: search.register with its own preset and constructor", function()
  -- every node improves the last finished one; 4 nodes
  search.register("chainline", {n_nodes = 4}, function(params)
    return {max_nodes = params.max_nodes or 20, next = function(self, J)
      if J:count() >= math.min(self.max_nodes, params.n_nodes) then return nil, "n_nodes" end
      local last = J:list()[#J:list()]
      return {kind = last.id == 0 and "draft" or "improve", parent = last.id, iteration = J:count()}
    end}
  end)
  T.ok(search.PRESETS.chainline, "listed with the presets")
  local J, reason = run("chainline", 1)
  T.eq(reason, "n_nodes")
  T.eq(shape(J), "1:draft<0@0 2:improve<1@1 3:improve<2@2 4:improve<3@3")
  T.eq(select(2, search.policy("nope")):match("^unknown scaffold"), "unknown scaffold")
  T.ok(select(2, search.policy("nope")):find("chainline", 1, true), "the message lists the registered one")
end)

T.case("SPEEDRUN_AGENT_SCAFFOLDS: a file's scaffolds are known to every process that loads the search", function()
  local plugin, check = tmp .. "/plugin.lua", tmp .. "/check.lua"
  T.write(plugin, [[
return function(search)
  search.register("wide-aide", {n_initial = 6, n_hypotheses = 2, n_iterations = 20, debug_prob = 0.3,
                                max_bug_depth = 3, max_nodes = 20})
end
]])
  T.write(check, [[
local search = require "speedrun.agent.search"
local p = assert(search.policy("wide-aide", {seed = 4}))
print(p.n_initial, p.n_hypotheses, p.debug_prob, p.seed, table.concat(search.names(), ","))
]])
  local f = io.popen("SPEEDRUN_AGENT_SCAFFOLDS=" .. sh(plugin) .. " " .. sh(arg[-1]) .. " run " .. sh(check) .. " 2>&1")
  local out = f:read("a")
  f:close()
  T.ok(out:find("^6\t2\t0.3\t4\t"), out)
  T.ok(out:find("wide-aide", 1, true), out)
end)

server:stop()
T.done()
