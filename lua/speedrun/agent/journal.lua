-- speedrun.agent.journal: the agent run's version tree on disk (docs/agent.md "The loop").
-- RUN/config.json (the run's settings), RUN/state.json (totals, stop reason), and one folder per
-- node v_K/: workspace/ (the recipe files the coder edits and `speedrun score` scores),
-- meta.json {id, parent, children, created_at, kind, iteration, bug_depth, stable_ancestor},
-- results.json (written last: a node is finished only when it exists), llm.jsonl, score/ and
-- score.log. Every file is written to a temporary name and renamed, so a SIGKILL at any point
-- leaves a consistent tree; open() removes unfinished nodes and rebuilds the children lists.
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local read_file = require("speedrun.util").read_file

local M = {}
local fmt = string.format
local J = {}
J.__index = J

local sh = require("speedrun.util").shell_quote
M.sh = sh

-- writes s to path through path.tmp and a rename (atomic on POSIX)
function M.write_atomic(path, s)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(s)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then return nil, rerr end
  return true
end

function M.write_json(path, t) return M.write_atomic(path, json.encode(t, true) .. "\n") end

function M.read_json(path)
  local s = read_file(path)
  if not s then return nil end
  return json.decode(s)
end

local function mkdir(path)
  local ok, err = H.mkdir(path)
  if not ok then error("journal: cannot create " .. path .. ": " .. tostring(err), 0) end
end

local function iso_now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

-- creates the run folder with v_0 = init(v_0/workspace) (the task's start workspace)
function M.create(dir, config, init)
  mkdir(dir)
  if read_file(dir .. "/config.json") then error("journal: " .. dir .. " already holds a run (use resume)", 0) end
  local J0 = setmetatable({dir = dir, config = config, nodes = {}, state = M.new_state()}, J)
  os.execute("rm -rf " .. sh(dir .. "/v_0"))
  mkdir(dir .. "/v_0")
  init(dir .. "/v_0/workspace")
  J0:write_meta({id = 0, parent = json.null, children = {}, created_at = iso_now(), kind = "root", iteration = -1,
                 bug_depth = 0, stable_ancestor = 0})
  J0:save_state()
  M.write_json(dir .. "/config.json", config)   -- last: a run without config.json is not a run yet
  return M.open(dir)
end

function M.new_state()
  return {schema = "speedrun.agent.state/1", calls = 0, prompt_tokens = 0, completion_tokens = 0, total_tokens = 0,
          cost = 0, wall_seconds = 0, gpu_seconds = 0, stopped = json.null, sessions = 0}
end

local function node_ids(dir)
  local ids = {}
  for _, name in ipairs(H.listdir(dir) or {}) do
    local id = name:match("^v_(%d+)$")
    if id then ids[#ids + 1] = tonumber(id) end
  end
  table.sort(ids)
  return ids
end

-- loads the run; unfinished nodes (no results.json; v_0 excepted) are removed, children rebuilt
-- (readonly: skipped and left alone, nothing written: a report of a run in progress)
function M.open(dir, readonly)
  local config = M.read_json(dir .. "/config.json")
  if not config then return nil, dir .. " holds no agent run (no config.json)" end
  local self = setmetatable({dir = dir, config = config, nodes = {}}, J)
  self.state = M.read_json(dir .. "/state.json") or M.new_state()
  for _, id in ipairs(node_ids(dir)) do
    local d = self:node_dir(id)
    local meta, results = M.read_json(d .. "/meta.json"), M.read_json(d .. "/results.json")
    if meta and (results or id == 0) then
      self.nodes[id] = {id = id, meta = meta, results = results, dir = d}
    elseif not readonly then
      os.execute("rm -rf " .. sh(d))   -- killed while it was made: it is made again
    end
  end
  if not self.nodes[0] then return nil, dir .. ": v_0 is missing" end
  self.readonly = readonly
  self:rebuild_children()
  return self
end

function J:node_dir(id) return fmt("%s/v_%d", self.dir, id) end
function J:workspace(id) return self:node_dir(id) .. "/workspace" end

function J:write_meta(meta)
  local m = {}
  for k, v in pairs(meta) do m[k] = v end
  m.children = json.array(meta.children or {})
  return M.write_json(fmt("%s/v_%d/meta.json", self.dir, meta.id), m)
end

-- the children lists from the nodes' own parent fields (the source of truth)
function J:rebuild_children()
  local kids = {}
  for _, n in pairs(self.nodes) do kids[n.id] = {} end
  for _, n in ipairs(self:list()) do
    local p = n.meta.parent
    if type(p) == "number" and kids[p] then table.insert(kids[p], n.id) end
  end
  for id, n in pairs(self.nodes) do
    local old = n.meta.children or {}
    n.meta.children = kids[id]
    if #old ~= #kids[id] and not self.readonly then self:write_meta(n.meta) end
  end
end

-- every node sorted by id (v_0 first)
function J:list()
  local out = {}
  for _, n in pairs(self.nodes) do out[#out + 1] = n end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

function J:count() return #self:list() - 1 end   -- agent nodes (v_0 excluded)

function J:next_id()
  local ids = node_ids(self.dir)
  return (ids[#ids] or 0) + 1
end

-- a new node: a copy of the parent's workspace and its meta.json; not finished until finish()
function J:new_node(spec)
  local id = self:next_id()
  local d = self:node_dir(id)
  mkdir(d)
  local ok = os.execute("cp -R " .. sh(self:workspace(spec.parent)) .. " " .. sh(d .. "/workspace"))
  if not ok then error("journal: cannot copy the workspace of v_" .. spec.parent, 0) end
  local meta = {id = id, parent = spec.parent, children = {}, created_at = iso_now(), kind = spec.kind,
                iteration = spec.iteration, bug_depth = json.null, stable_ancestor = json.null}
  self:write_meta(meta)
  return {id = id, meta = meta, dir = d}
end

-- buggy: failed or invalid (the benchmark's definition)
function M.buggy(n)
  local r = n.results
  return not (r and r.metrics and r.metrics.is_valid == true)
end

-- records the node's results: meta.json's bug_depth and stable_ancestor first, results.json last
function J:finish(node, results)
  local parent = self.nodes[node.meta.parent]
  node.results = results
  if M.buggy(node) then
    node.meta.bug_depth = (parent.meta.bug_depth or 0) + 1
    node.meta.stable_ancestor = M.buggy(parent) and parent.meta.stable_ancestor or parent.id
  else
    node.meta.bug_depth, node.meta.stable_ancestor = 0, node.id
  end
  self:write_meta(node.meta)
  local ok, err = M.write_json(node.dir .. "/results.json", results)
  if not ok then error("journal: cannot write results of v_" .. node.id .. ": " .. tostring(err), 0) end
  self.nodes[node.id] = node
  table.insert(parent.meta.children, node.id)
  self:write_meta(parent.meta)
end

-- v_0's results (its score), written once
function J:finish_root(results)
  local n = self.nodes[0]
  n.results = results
  M.write_json(n.dir .. "/results.json", results)
end

function J:save_state() return M.write_json(self.dir .. "/state.json", self.state) end

-- the bug history for a node whose stable ancestor is `anc`: at most 3 buggy descendants of it,
-- at most 3 levels below, by id descending ({id, parent, hypothesis, summary, error})
function J:bug_history(anc, limit)
  local out = {}
  local function walk(id, depth)
    if depth > 3 then return end
    for _, c in ipairs(self.nodes[id].meta.children or {}) do
      local n = self.nodes[c]
      if n and M.buggy(n) then
        local r = n.results or {}
        out[#out + 1] = {id = c, parent = id, hypothesis = r.hypothesis, summary = r.outcome_summary or "",
                         error = (type(r.failure) == "table" and r.failure.message) or r.status or "invalid"}
      end
      if n then walk(c, depth + 1) end
    end
  end
  walk(anc, 1)
  table.sort(out, function(a, b) return a.id > b.id end)
  while #out > (limit or 3) do table.remove(out) end
  return out
end

-- the workspace's editable files: {["recipe.lua"] = text, ...} (.lua, .cu, .cuh; top level and
-- one level of folders)
function M.code_files(ws)
  local files = {}
  local function scan(rel)
    local d = rel == "" and ws or (ws .. "/" .. rel)
    for _, name in ipairs(H.listdir(d) or {}) do
      local r = rel == "" and name or (rel .. "/" .. name)
      local st = H.stat(ws .. "/" .. r, true)
      if st and st.type == "dir" and rel == "" and name ~= "runs" then scan(r)
      elseif st and st.type == "file" and (name:match("%.lua$") or name:match("%.cuh?$")) then
        files[r] = read_file(ws .. "/" .. r)
      end
    end
  end
  scan("")
  return files
end

return M
