-- speedrun.agent.search: search policies (scaffolds) over the journal's version tree. A policy is
-- an object with policy:next(journal) -> {kind = "draft"|"improve"|"debug", parent = id,
-- iteration = i} or nil, reason (the search is over). It must be a pure function of the finished
-- nodes and its parameters (randomness from M.rng(seed, i), never a running stream), so a resumed
-- run makes the same choices as an uninterrupted one. docs/agent.md "Adding a scaffold".
-- The AIDE policy is the benchmark's bon/aide runner (reference/benchmark.md §4).
local journal = require "speedrun.agent.journal"
local greedy = require "speedrun.agent.greedy"

local M = {}

-- a deterministic uniform number in [0, 1) for (seed, i): splitmix64-style mixing
function M.rng(seed, i)
  local x = (math.tointeger(seed) or 0) * 0x9E3779B97F4A7C15 + (i + 1) * 0xBF58476D1CE4E5B9
  x = (x ~ (x >> 30)) * 0xBF58476D1CE4E5B9
  x = (x ~ (x >> 27)) * 0x94D049BB133111EB
  x = x ~ (x >> 31)
  return ((x >> 11) & ((1 << 53) - 1)) / (1 << 53)
end

-- the node's train time for the greedy choice (missing or invalid: worst)
local function time_of(n)
  if journal.buggy(n) then return math.huge end
  local t = n.results.metrics.train_time_ms
  return type(t) == "number" and t or math.huge
end

M.time_of = time_of

-- the top-1 by train time among ids (ties: the higher id); nil when none is valid
local function top1(J, ids)
  local best, bt
  for _, id in ipairs(ids) do
    local t = time_of(J.nodes[id])
    if t < math.huge and (not best or t < bt or (t == bt and id > best)) then best, bt = id, t end
  end
  return best
end

-- buggy leaves with 1 <= bug_depth <= max_bug_depth, by id
local function buggy_leaves(J, max_depth)
  local out = {}
  for _, n in ipairs(J:list()) do
    local d = n.meta.bug_depth
    if n.id > 0 and #n.meta.children == 0 and journal.buggy(n) and type(d) == "number" and d >= 1 and d <= max_depth then
      out[#out + 1] = n.id
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- AIDE / bon: iterations; iteration 0 expands v_0 with n_initial drafts; each later iteration
-- expands the open node chosen after the previous one (a buggy leaf with probability debug_prob,
-- else the greedy top-1 of {v_0, the open node, its new children}) with n_hypotheses children
-- (1 when it is buggy).
local Aide = {}
Aide.__index = Aide

-- the benchmark's table (all with max_nodes = 20; the loop sets max_nodes from --max-nodes)
M.PRESETS = {
  flat = {n_initial = 20, n_hypotheses = 1, n_iterations = 1, debug_prob = 0, max_bug_depth = 0, max_nodes = 20},
  tree = {n_initial = 1, n_hypotheses = 3, n_iterations = 20, debug_prob = 0, max_bug_depth = 0, max_nodes = 20},
  forest = {n_initial = 3, n_hypotheses = 3, n_iterations = 20, debug_prob = 0, max_bug_depth = 0, max_nodes = 20},
  aide = {n_initial = 3, n_hypotheses = 1, n_iterations = 20, debug_prob = 0.5, max_bug_depth = 5, max_nodes = 20},
  ["multi-aide"] = {n_initial = 3, n_hypotheses = 3, n_iterations = 20, debug_prob = 0.5, max_bug_depth = 5,
                    max_nodes = 20},
  -- keep-or-revert on one line of descent (speedrun.agent.greedy; its own runner, not AIDE's)
  greedy = {max_bug_depth = 1},
}
-- the constructor of each scaffold that is not a preset of the AIDE runner (M.aide)
M.CONSTRUCTORS = {greedy = greedy.new}

function M.aide(p)
  local self = setmetatable({}, Aide)
  for k, v in pairs(M.PRESETS.aide) do self[k] = v end
  for k, v in pairs(p or {}) do self[k] = v end
  self.seed = self.seed or 1
  self.max_nodes = self.max_nodes or 20
  return self
end

-- the nodes of iteration i (by id)
local function of_iteration(J, i)
  local out = {}
  for _, n in ipairs(J:list()) do if n.meta.iteration == i then out[#out + 1] = n.id end end
  return out
end

-- the open node after iteration i, given its parent `open` and children `kids`
function Aide:choose(J, i, open, kids)
  local leaves = buggy_leaves(J, self.max_bug_depth)
  if #leaves > 0 and M.rng(self.seed, 2 * i) < self.debug_prob then
    local k = math.floor(M.rng(self.seed, 2 * i + 1) * #leaves) + 1
    return leaves[k]
  end
  local cand = {0, open}
  for _, k in ipairs(kids) do cand[#cand + 1] = k end
  return top1(J, cand) or 0
end

function Aide:branch(J, i, open)
  if i == 0 then return self.n_initial end
  return journal.buggy(J.nodes[open]) and 1 or self.n_hypotheses
end

local function kind_for(J, open)
  if open == 0 then return "draft" end
  return journal.buggy(J.nodes[open]) and "debug" or "improve"
end

function Aide:next(J)
  if J:count() >= self.max_nodes then return nil, "max_nodes" end
  local last = J:list()
  local i = #last > 1 and last[#last].meta.iteration or 0
  local kids = of_iteration(J, i)
  local open = kids[1] and J.nodes[kids[1]].meta.parent or 0
  if #kids < self:branch(J, i, open) then
    return {kind = kind_for(J, open), parent = open, iteration = i}
  end
  if i + 1 >= self.n_iterations then return nil, "n_iterations" end
  local nxt = self:choose(J, i, open, kids)
  if journal.buggy(J.nodes[nxt]) and self.max_bug_depth == 0 then nxt = 0 end
  return {kind = kind_for(J, nxt), parent = nxt, iteration = i + 1}
end

-- the known scaffold names, sorted
function M.names()
  local t = {}
  for k in pairs(M.PRESETS) do t[#t + 1] = k end
  table.sort(t)
  return t
end

-- adds a scaffold: name, its default parameters (a preset), and a constructor
-- function(params) -> policy | nil, message (nil: a preset of the AIDE runner, M.aide).
-- docs/agent.md "Adding a scaffold".
function M.register(name, preset, constructor)
  assert(type(name) == "string" and name:match("^[%w_-]+$"),
         "search.register: a scaffold name of letters, digits, _ and -")
  M.PRESETS[name] = preset or {}
  M.CONSTRUCTORS[name] = constructor
end

-- the rest of the current iteration's steps at once (all independent: same parent, none scored
-- yet), for a loop that scores them in parallel; nil, reason when the search is over
function Aide:batch(J)
  local step, why = self:next(J)
  if not step then return nil, why end
  local done = 0
  for _, id in ipairs(of_iteration(J, step.iteration)) do
    if J.nodes[id].meta.parent == step.parent then done = done + 1 end
  end
  local n = math.min(self:branch(J, step.iteration, step.parent) - done, self.max_nodes - J:count())
  local out = {}
  for k = 1, math.max(n, 1) do out[k] = step end
  return out
end

-- the policy named `name` (a preset of M.PRESETS) with parameters p over the preset's; nil,
-- message when unknown (or when the greedy scaffold finds no git)
function M.policy(name, p)
  name = name or "aide"
  local preset = M.PRESETS[name]
  if not preset then
    return nil, "unknown scaffold '" .. tostring(name) .. "' (known: " .. table.concat(M.names(), ", ") .. ")"
  end
  local q = {}
  for k, v in pairs(preset) do q[k] = v end
  for k, v in pairs(p or {}) do q[k] = v end
  local make = M.CONSTRUCTORS[name] or M.aide
  return make(q)
end

-- scaffolds from files: SPEEDRUN_AGENT_SCAFFOLDS = "a.lua:b.lua", each file returning
-- function(search) that calls search.register (so `agent run --scaffold` and every sweep cell,
-- a subprocess inheriting the variable, know them)
for path in (os.getenv("SPEEDRUN_AGENT_SCAFFOLDS") or ""):gmatch("[^:]+") do
  local chunk = assert(loadfile(path))
  local fn = chunk()
  if type(fn) == "function" then fn(M) end
end

return M
