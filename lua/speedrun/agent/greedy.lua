-- speedrun.agent.greedy: the keep-or-revert scaffold (`--scaffold greedy`, the autoresearch loop
-- on the version tree; docs/agent.md "The greedy scaffold"). The policy keeps one line of
-- descent: each new node improves the current best (or debugs the last node after a failure, up
-- to max_bug_depth); a node is KEPT when it is valid and faster than the best so far (the host's
-- train time, the mean over --runs), else DISCARDED, or CRASH when its run failed. The verdicts
-- are a pure function of the journal. The ledger mirrors them in git: RUN/greedy/ is a repository
-- whose branch `speedrun/greedy` holds one commit per kept node (v_0 the root), and RUN/results.tsv
-- lists every attempt. policy:sync(J) (called by the loop after v_0 and after every node)
-- reconciles both with the journal, keyed by node id, so a SIGKILL at any point is repaired.
local json = require "speedrun.json"
local journal = require "speedrun.agent.journal"
local read_file = require("speedrun.util").read_file

local M = {}
local fmt = string.format
local sh = journal.sh

M.BRANCH = "speedrun/greedy"
M.DEFAULTS = {max_bug_depth = 1, max_nodes = 20}
M.TSV_HEADER = "commit\tval_loss\ttrain_time_ms\tmemory\tstatus\tdescription"

-- statuses whose node ran (or changed nothing) without crashing: discarded when not kept
local RAN = {valid = true, invalid = true, fail = true, no_edit = true}

local function num(v) return type(v) == "number" and v or nil end

local function time_of(n)
  local r = n and n.results
  if not r or journal.buggy(n) then return math.huge end
  return num(r.metrics.train_time_ms) or math.huge
end

-- the verdicts of the finished nodes: {[id] = "keep"|"discard"|"crash"} (v_0: "keep", the
-- baseline) and the id of the current best (the last kept node)
function M.verdicts(J)
  local st, best = {[0] = "keep"}, 0
  for _, n in ipairs(J:list()) do
    if n.id > 0 and n.results then
      if not RAN[n.results.status] then st[n.id] = "crash"
      elseif time_of(n) < time_of(J.nodes[best]) then st[n.id], best = "keep", n.id
      else st[n.id] = "discard" end
    end
  end
  return st, best
end

-- is git on the PATH?
function M.have_git()
  local ok = os.execute("git --version > /dev/null 2>&1")
  return ok == true or ok == 0
end

M.NO_GIT = "the greedy scaffold needs git (it commits kept nodes to the branch " .. M.BRANCH
  .. " in RUN/greedy/): install git or choose another --scaffold"

-- ---------------------------------------------------------------------------------------------
-- the policy

local Greedy = {}
Greedy.__index = Greedy

-- p: {max_bug_depth, max_nodes, seed (unused: the policy draws nothing)}; nil, message without git
function M.new(p)
  if not M.have_git() then return nil, M.NO_GIT end
  local self = setmetatable({}, Greedy)
  for k, v in pairs(M.DEFAULTS) do self[k] = v end
  for k, v in pairs(p or {}) do self[k] = v end
  return self
end

-- debug the last node when it failed (1 <= bug_depth <= max_bug_depth), else improve the best
function Greedy:next(J)
  if J:count() >= self.max_nodes then return nil, "max_nodes" end
  local list = J:list()
  local last = list[#list]
  local _, best = M.verdicts(J)
  local d = last.meta.bug_depth
  if last.id > 0 and journal.buggy(last) and type(d) == "number" and d >= 1 and d <= self.max_bug_depth then
    return {kind = "debug", parent = last.id, iteration = J:count()}
  end
  return {kind = best == 0 and "draft" or "improve", parent = best, iteration = J:count()}
end

function Greedy:sync(J)
  M.sync(J)
end

-- ---------------------------------------------------------------------------------------------
-- git

local GIT_OPTS = "-c user.name=speedrun -c user.email=speedrun@localhost -c commit.gpgsign=false "
  .. "-c core.hooksPath=/dev/null -c core.autocrlf=false"

-- runs `git -C repo ARGS...` (each argument quoted); returns its output or nil, output
local function git(repo, ...)
  local parts = {"git", "-C", sh(repo), GIT_OPTS}
  for _, a in ipairs {...} do parts[#parts + 1] = sh(a) end
  local p = io.popen(table.concat(parts, " ") .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  if not ok then return nil, out end
  return out
end

local function must(what, out, err)
  if not out then error(fmt("greedy: git %s failed: %s", what, tostring(err)), 0) end
  return out
end

function M.repo(J) return J.dir .. "/greedy" end

-- the repository, made when missing; a lock left by a killed git is removed (we are its only user)
local function ensure_repo(repo)
  if not M.have_git() then error(M.NO_GIT, 0) end
  os.remove(repo .. "/.git/index.lock")
  if read_file(repo .. "/.git/HEAD") then return end
  os.execute("rm -rf " .. sh(repo) .. " && mkdir -p " .. sh(repo))
  must("init", git(repo, "init", "-q"))
  must("symbolic-ref", git(repo, "symbolic-ref", "HEAD", "refs/heads/" .. M.BRANCH))
end

-- the branch's commits, oldest first: {{id = node id, hash = short hash}, ...}
function M.branch_nodes(repo)
  local out = git(repo, "log", "--reverse", "--format=%h %s", "refs/heads/" .. M.BRANCH)
  local list = {}
  for line in (out or ""):gmatch("[^\n]+") do
    local h, id = line:match("^(%x+) v_(%d+):")
    if h then list[#list + 1] = {id = tonumber(id), hash = h} end
  end
  return list
end

-- the work tree becomes a copy of node id's workspace
local function put_files(J, repo, id)
  os.execute("find " .. sh(repo) .. " -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +")
  local ok = os.execute("cp -R " .. sh(J:workspace(id) .. "/.") .. " " .. sh(repo .. "/"))
  if not ok then error("greedy: cannot copy the workspace of v_" .. id, 0) end
end

-- the work tree back to the branch's head (a discarded node's changes reverted)
local function revert(repo)
  git(repo, "reset", "-q", "--hard")
  git(repo, "clean", "-qfdx")
end

local function one_line(s)
  return (tostring(s or ""):gsub("[\t\r\n]+", " "):gsub("^%s+", ""):gsub("%s+$", ""))
end

local function hypothesis(n)
  if n.id == 0 then return "baseline: the task's start recipe" end
  return one_line(n.results and n.results.hypothesis)
end

local function metric(v, f) return num(v) and fmt(f, v) or "-" end

-- commits node n (its files, message: node id, hypothesis, metrics)
local function commit(J, repo, n)
  put_files(J, repo, n.id)
  must("add", git(repo, "add", "-A"))
  local m, h = n.results.metrics, hypothesis(n)
  local msg = fmt("v_%d: %s\n\nnode: v_%d\nparent: %s\nkind: %s\nhypothesis: %s\nval_loss: %s\ntrain_time_ms: %s\n",
    n.id, #h > 72 and h:sub(1, 69) .. "..." or h, n.id, type(n.meta.parent) == "number" and "v_" .. n.meta.parent or "-",
    tostring(n.meta.kind), h, metric(m.val_loss, "%.6f"), metric(m.train_time_ms, "%.1f"))
  local path = repo .. "/.git/SPEEDRUN_MSG"
  assert(journal.write_atomic(path, msg))
  must("commit", git(repo, "commit", "-q", "--allow-empty", "-F", path))
end

-- the branch made equal to the kept nodes (want, ids in order): the common prefix stays, a commit
-- the journal does not keep is dropped (git reset), the missing kept nodes are committed
local function reconcile(J, repo, want)
  local have = M.branch_nodes(repo)
  local k = 0
  while k < #have and k < #want and have[k + 1].id == want[k + 1] do k = k + 1 end
  if k < #have then
    if k == 0 then
      os.execute("rm -rf " .. sh(repo))
      ensure_repo(repo)
    else
      must("reset", git(repo, "reset", "-q", "--hard", have[k].hash))
    end
  end
  for i = k + 1, #want do commit(J, repo, J.nodes[want[i]]) end
end

-- ---------------------------------------------------------------------------------------------
-- results.tsv

-- the peak memory of the node's runs: GPU bytes when measured, else host bytes; nil when none
local function memory(J, id)
  local peak
  for i = 1, 64 do
    local r = journal.read_json(fmt("%s/score/run%d/results.json", J:node_dir(id), i))
    if type(r) ~= "table" then break end
    local m = type(r.metrics) == "table" and r.metrics or {}
    local b = (num(m.peak_gpu_bytes) or 0) > 0 and m.peak_gpu_bytes or num(m.peak_host_bytes)
    if b and (not peak or b > peak) then peak = b end
  end
  return peak
end

-- the TSV's text from the journal and the branch (hashes by node id)
function M.tsv(J, st, hashes)
  local lines = {M.TSV_HEADER}
  for _, n in ipairs(J:list()) do
    if n.results then
      local m = n.results.metrics or {}
      local mem = memory(J, n.id)
      lines[#lines + 1] = table.concat({st[n.id] == "keep" and hashes[n.id] or "-", metric(m.val_loss, "%.6f"),
        metric(m.train_time_ms, "%.1f"), mem and fmt("%d", mem) or "-", st[n.id], hypothesis(n)}, "\t")
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

-- reconciles the branch, reverts the work tree, rewrites RUN/results.tsv; returns the verdicts
function M.sync(J)
  local repo = M.repo(J)
  ensure_repo(repo)
  local st = M.verdicts(J)
  local want = {}
  for _, n in ipairs(J:list()) do
    if n.results and st[n.id] == "keep" then want[#want + 1] = n.id end
  end
  reconcile(J, repo, want)
  local last = J:list()
  last = last[#last]
  if last.id > 0 and st[last.id] ~= "keep" then put_files(J, repo, last.id) end   -- the attempt, then
  revert(repo)                                                                     -- its revert
  local hashes = {}
  for _, c in ipairs(M.branch_nodes(repo)) do hashes[c.id] = c.hash end
  assert(journal.write_atomic(J.dir .. "/results.tsv", M.tsv(J, st, hashes)))
  return st
end

return M
