-- speedrun.agent.loop: the node loop (docs/agent.md "The loop"). Each step asks the search policy
-- for {kind, parent}, copies the parent's workspace into a new node, runs the coder there (the
-- injected coder, talking to the injected chat through a wrapper that checks the budget, counts
-- tokens and logs to the node's llm.jsonl), scores the workspace with `speedrun score` as a
-- subprocess (the host's clock, validation and sandbox), and writes the node's results. The chat
-- and the coder are parameters (start/resume's deps), so tests drive the loop with fakes.
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local journal = require "speedrun.agent.journal"
local search = require "speedrun.agent.search"
local budget = require "speedrun.agent.budget"
local runner = require "speedrun.agent.runner"
local taskmod = require "speedrun.task"
local read_file = require("speedrun.util").read_file

local M = {}
local fmt = string.format
local sh = journal.sh
local null = json.null

local function task_of(config)
  local m, err = taskmod.manifest()
  if not m then error("agent: " .. tostring(err), 0) end
  local t = taskmod.get(m, config.task)
  if not t then error("agent: no task " .. tostring(config.task), 0) end
  return m, t
end

-- the first line of s that is not blank
local function first_line(s)
  for line in tostring(s or ""):gmatch("[^\n]+") do
    if line:match("%S") then return (line:gsub("^%s+", "")) end
  end
  return ""
end

local function num(v) return type(v) == "number" and v or nil end

-- ---------------------------------------------------------------------------------------------
-- scoring: `speedrun score WS --task N --scale S --runs K --out NODE/score` as a subprocess

function M.score_command(config, node_dir)
  local parts = {sh(H.self_exe()), "score", sh(node_dir .. "/workspace"), "--task", tostring(config.task),
                 "--scale", sh(config.scale), "--runs", tostring(config.runs or 1), "--seed", tostring(config.score_seed or 1),
                 "--out", sh(node_dir .. "/score"), "--quiet"}
  for _, a in ipairs(config.score_args or {}) do parts[#parts + 1] = sh(a) end
  return table.concat(parts, " ") .. " > " .. sh(node_dir .. "/score.log") .. " 2>&1"
end

-- the node's status and metrics from score.json (S); run failures name the node's failure kind
local function metrics_of(S)
  local status, failure = "valid", null
  for _, r in ipairs(S.runs or {}) do
    if not r.valid then status, failure = r.status or "crash", r.failure break end
  end
  local sum = S.summary or {}
  local vl = sum.val_loss and num(sum.val_loss.mean)
  local tt = sum.train_time_ms and num(sum.train_time_ms.mean)
  local ok = status == "valid" and (S.verdict == "pass" or S.verdict == "undetermined")
  if status == "valid" and not ok then status, failure = S.verdict or "fail", {kind = S.verdict, message = S.reason} end
  local f = 0
  if ok and S.fsr then
    -- one run cannot pass the t-test: its FSR is the raw one, clipped as the benchmark's analysis does
    f = S.verdict == "pass" and num(S.fsr.value) or num(S.fsr.raw)
    if not f or f < 0 or f > 3 then f = 0 end
  end
  return status, failure, {val_loss = vl or null, train_time_ms = tt or null, is_valid = ok, fsr = ok and f or 0}
end

-- the host's own account of the run: status, loss, time, verdict, the first error line
function M.host_summary(status, metrics, S, failure)
  local L = {"status: " .. status}
  if num(metrics.val_loss) then L[#L + 1] = fmt("val_loss: %.4f", metrics.val_loss) end
  if num(metrics.train_time_ms) then L[#L + 1] = fmt("train_time: %.0fms", metrics.train_time_ms) end
  if S and S.verdict then L[#L + 1] = fmt("verdict: %s (%s)", S.verdict, tostring(S.reason)) end
  if type(failure) == "table" and failure.message then L[#L + 1] = "error: " .. first_line(failure.message) end
  return table.concat(L, "\n")
end

-- scores the node; returns status, failure, metrics, summary, seconds, S (score.json or nil)
function M.score_node(config, node_dir)
  local t0 = H.now()
  os.execute(M.score_command(config, node_dir))
  return M.read_score(node_dir, H.now() - t0)
end

-- the node's score as score_node returns it, once `speedrun score` has run (here or as a job)
function M.read_score(node_dir, seconds)
  local S = journal.read_json(node_dir .. "/score/score.json")
  if type(S) ~= "table" then
    local log = read_file(node_dir .. "/score.log") or ""
    local failure = {kind = "score_error", message = "speedrun score wrote no score.json: " .. first_line(log:sub(-2000))}
    local metrics = {val_loss = null, train_time_ms = null, is_valid = false, fsr = 0}
    return "score_error", failure, metrics, M.host_summary("score_error", metrics, nil, failure), seconds
  end
  local status, failure, metrics = metrics_of(S)
  return status, failure, metrics, M.host_summary(status, metrics, S, failure), seconds, S
end

-- ---------------------------------------------------------------------------------------------
-- the chat the coder sees: budget check, usage totals, the node's llm.jsonl

local function append_line(path, t)
  local f = io.open(path, "ab")
  if f then f:write(json.encode(t), "\n") f:close() end
end

local function chat_function(chat)
  if type(chat) == "function" then return chat end
  return function(messages, opts) return chat:chat(messages, opts) end
end

-- ctx: {chat, budget, journal, log = path}; ctx.stopped is set when the budget refused a call
function M.wrap_chat(ctx)
  local call = chat_function(ctx.chat)
  return function(messages, opts)
    local reason = ctx.budget:check_call()
    if reason then ctx.stopped = reason return nil, "budget: " .. reason end
    local t0 = H.now()
    local reply, err = call(messages, opts)
    local usage = reply and reply.usage or {}
    ctx.budget:add_usage(usage)
    ctx.budget:sync()
    ctx.journal:save_state()
    append_line(ctx.log, {time = os.date("!%Y-%m-%dT%H:%M:%SZ"), messages = messages,
                          response = reply and reply.content or null, usage = usage, latency_s = H.now() - t0,
                          error = err or null})
    return reply, err
  end
end

-- ---------------------------------------------------------------------------------------------
-- one node

local INSTRUCTIONS = {
  draft = "Propose one change that makes the recipe reach the target validation loss in less training time, "
    .. "state it in one or two sentences (your hypothesis), then implement it.",
  improve = "This version works. Propose one further change that reduces the training time while keeping the "
    .. "validation loss under the target, state it (your hypothesis), then implement it.",
  debug = "This version is buggy (see the outcome summary in the bug history). Fix the bug first; state what was "
    .. "wrong (your hypothesis), then implement the fix.",
}

-- the hypothesis: the coder's own (an external coder's notes) or the reply's prose before the first edit block
local function hypothesis_of(res, instruction)
  if res and type(res.hypothesis) == "string" and res.hypothesis ~= "" then return res.hypothesis end
  local text = res and res.replies and res.replies[1]
  if type(text) == "string" then
    local prose = text:match("^(.-)<<<<<<<") or text:match("^(.-)```") or text
    prose = prose:gsub("^%s+", ""):gsub("%s+$", "")
    if #prose > 0 then return #prose > 1200 and prose:sub(1, 1200) .. "..." or prose end
  end
  return instruction
end

local function coder_call(coder, args)
  if type(coder) == "function" then return coder(args) end
  return coder.run(args)
end

-- the coder's prompt fields for a node
local function prompt_fields(run, step, node)
  local J = run.journal
  local parent = J.nodes[step.parent]
  local anc = journal.buggy(parent) and parent.meta.stable_ancestor or 0
  local hist = {}
  for _, b in ipairs(J:bug_history(type(anc) == "number" and anc or 0)) do
    hist[#hist + 1] = {summary = fmt("Version: v_%d\nParent version: v_%d\nHypothesis: %s\nOutcome summary: %s",
      b.id, b.parent, tostring(b.hypothesis), b.summary), error = b.error}
  end
  return {task = run.statement, rules = run.rules, files = journal.code_files(node.dir .. "/workspace"),
          hint = run.hint, bug_history = hist, instruction = INSTRUCTIONS[step.kind] or INSTRUCTIONS.improve}
end

-- the benchmark's LLM summary of the run's logs (optional); nil when off or the call fails
local function llm_summary(run, chat, node_dir, host)
  if not run.journal.config.llm_summary then return nil end
  local log = read_file(node_dir .. "/score/run1/log.txt") or ""
  local rlog = read_file(node_dir .. "/score/run1/recipe.log") or ""
  local prompt = "Summarize the outcome of this training run in at most 500 words: was the goal (validation loss "
    .. "under the target in less training time) achieved? Quote any useful error output in code fences.\n\n"
    .. "Host summary:\n" .. host .. "\n\nHarness log (end):\n```\n" .. log:sub(-30000) .. "\n```\n\nRecipe output (end):\n```\n"
    .. rlog:sub(-30000) .. "\n```"
  local reply = chat({{role = "user", content = prompt}})
  return reply and reply.content
end

local function failed_results(status, message, hypothesis)
  local failure = {kind = status, message = message}
  local metrics = {val_loss = null, train_time_ms = null, is_valid = false, fsr = 0}
  return {status = status, failure = failure, metrics = metrics, hypothesis = hypothesis,
          outcome_summary = M.host_summary(status, metrics, nil, failure), run_seconds = 0}
end

-- the coding half of a node: a new node, its prompt, the coder. Returns the coded node
-- {node, step, ctx, chat, args, ok, res, hyp, results (set when it is not to be scored)}, or
-- "stopped", reason (the budget refused an LLM call; the node is dropped)
function M.code_node(run, step)
  local J = run.journal
  local node = J:new_node(step)
  local ctx = {chat = run.chat, budget = run.budget, journal = J, log = node.dir .. "/llm.jsonl"}
  local chat = M.wrap_chat(ctx)
  local args = prompt_fields(run, step, node)
  args.chat, args.dir, args.max_reflections = chat, node.dir .. "/workspace", 5
  local ok, res = pcall(coder_call, run.coder, args)
  if ctx.stopped then os.execute("rm -rf " .. sh(node.dir)) return "stopped", ctx.stopped end
  local c = {node = node, step = step, ctx = ctx, chat = chat, args = args, ok = ok, res = res,
             hyp = hypothesis_of(ok and res, args.instruction)}
  if not ok or type(res) ~= "table" or not res.ok then
    c.results = failed_results("coder_error", ok and type(res) == "table" and tostring(res.error) or tostring(res), c.hyp)
  elseif not res.edits or #res.edits == 0 then
    c.results = failed_results("no_edit", "the coder's reply held no edit", c.hyp)
  end
  return c
end

-- the scoring half: scored = {status, failure, metrics, host, seconds} (nil: not scored); the
-- node's results written. Returns "done", or "stopped", reason (the LLM summary was refused)
function M.finish_node(run, c, scored)
  local results = c.results
  if scored then
    run.budget:add_gpu(scored.seconds)
    local extra = llm_summary(run, c.chat, c.node.dir, scored.host)
    if c.ctx.stopped then os.execute("rm -rf " .. sh(c.node.dir)) return "stopped", c.ctx.stopped end
    results = {status = scored.status, failure = scored.failure, metrics = scored.metrics, hypothesis = c.hyp,
               run_seconds = scored.seconds, job = scored.job,
               outcome_summary = extra and (scored.host .. "\n\nLLM summary:\n" .. extra) or scored.host}
  end
  results.kind = c.step.kind
  results.rounds = c.ok and type(c.res) == "table" and c.res.rounds or null
  run.journal:finish(c.node, results)
  return "done"
end

local function scored_of(status, failure, metrics, host, seconds)
  return {status = status, failure = failure, metrics = metrics, host = host, seconds = seconds}
end

-- runs one node; returns "done" or "stopped" (the budget refused an LLM call; the node is dropped)
function M.run_node(run, step)
  local c, why = M.code_node(run, step)
  if c == "stopped" then return c, why end
  local scored = not c.results and scored_of(M.score_node(run.journal.config, c.node.dir)) or nil
  return M.finish_node(run, c, scored)
end

-- one iteration's nodes at once (the benchmark's runner: code each node in turn, then score them
-- all as independent jobs of run.runner, then write their results in id order); returns "done"
-- or "stopped", reason
function M.run_batch(run, steps)
  local coded = {}
  local function drop(from)
    for k = from, #coded do os.execute("rm -rf " .. sh(coded[k].node.dir)) end
  end
  for _, step in ipairs(steps) do
    local c, why = M.code_node(run, step)
    if c == "stopped" then drop(1) return c, why end
    coded[#coded + 1] = c
  end
  local jobs, by = {}, {}
  for _, c in ipairs(coded) do
    if not c.results then
      local name = "v_" .. c.node.id
      jobs[#jobs + 1], by[name] = {name = name, cmd = M.score_command(run.journal.config, c.node.dir)}, c
    end
  end
  local res = run.runner:run(jobs, {
    on_start = function(job, handle) by[job.name].t0, by[job.name].handle = H.now(), handle end,
    on_done = function(job) by[job.name].seconds = H.now() - (by[job.name].t0 or H.now()) end})
  for k, c in ipairs(coded) do
    local scored
    if not c.results then
      scored = scored_of(M.read_score(c.node.dir, c.seconds or 0))
      local r = res["v_" .. c.node.id] or {}
      scored.job = {handle = c.handle or null, state = r.state or null, rc = r.rc or null, batch = #jobs}
    end
    local r, why = M.finish_node(run, c, scored)
    if r == "stopped" then drop(k + 1) return r, why end
  end
  return "done"
end

-- the job runner of a run whose config asks for parallel scoring (config.parallel = {n, backend,
-- sbatch_args}): nil when nodes are scored one at a time
function M.node_runner(J)
  local P = J.config.parallel
  if type(P) ~= "table" or ((tonumber(P.n) or 1) < 2 and P.backend ~= "slurm") then return nil end
  local n = tonumber(P.n) or 1
  local gpus = runner.gpus()
  while #gpus > n do table.remove(gpus) end
  local R, err = runner.new {backend = P.backend or "local", slots = n, gpus = gpus, dir = J.dir .. "/jobs",
                             sbatch_args = type(P.sbatch_args) == "table" and P.sbatch_args or nil,
                             poll = tonumber(P.poll) or (P.backend == "slurm" and 2 or 0.2)}
  if not R then error("agent: " .. err, 0) end
  return R
end

-- ---------------------------------------------------------------------------------------------
-- the run

-- v_0 scored once (its time on this machine is the baseline of the greedy choice). When the
-- score itself cannot run (no calibration for the task, a reference refused...), no node can be
-- scored either: the run stops before any LLM call, saying why; resume scores v_0 again.
local function score_root(run)
  local J = run.journal
  local R = J.nodes[0].results
  if R and R.status ~= "score_error" then return end
  local status, failure, metrics, host, seconds = M.score_node(J.config, J.nodes[0].dir)
  run.budget:add_gpu(seconds)
  J:finish_root({status = status, failure = failure, metrics = metrics, hypothesis = "the task's start recipe",
                 outcome_summary = host, run_seconds = seconds, kind = "root"})
  if status == "score_error" then
    J:save_state()
    error(fmt("the task's start recipe (v_0) could not be scored, so no node could be: %s\n"
      .. "(its log: %s/score.log; fix the cause, then `speedrun agent resume %s`)", failure.message, J.nodes[0].dir, J.dir), 0)
  end
end

local function gpu_total(J)
  local s = 0
  for _, n in ipairs(J:list()) do s = s + (n.results and num(n.results.run_seconds) or 0) end
  return s
end

-- the best node: the fastest valid agent node, else v_0
function M.best(J)
  local best, bt
  for _, n in ipairs(J:list()) do
    local t = search.time_of(n)
    if n.id > 0 and t < math.huge and (not best or t < bt) then best, bt = n, t end
  end
  return best or J.nodes[0]
end

function M.progress(run)
  if run.quiet then return end
  local J, B = run.journal, run.budget
  local best = M.best(J)
  local bt = best.results and num(best.results.metrics.train_time_ms)
  local eta = B:eta(J:count() - run.done0)
  io.stderr:write(fmt("agent: node %d/%s  best v_%d %s  tokens %d  gpu %.1fs  wall %.0fs%s\n", J:count(),
    tostring(B.limits.max_nodes or "-"), best.id, bt and fmt("%.0fms", bt) or "-", J.state.total_tokens or 0,
    J.state.gpu_seconds or 0, B:wall(), eta and fmt("  eta %.0fs", eta) or ""))
end

local function stop(run, reason)
  local J = run.journal
  run.budget:sync()
  J.state.stopped = {reason = reason, at = os.date("!%Y-%m-%dT%H:%M:%SZ"), nodes = J:count()}
  J:save_state()
  if not run.quiet then io.stderr:write("agent: stopped: ", reason, "\n") end
  return reason
end

-- runs the search until the policy or a budget stops it; returns the stop reason
function M.run(J, deps)
  local C = J.config
  local m, t = task_of(C)
  local sp = {}
  for k, v in pairs(C.search or {}) do sp[k] = v end
  sp.seed = C.seed or 1
  local policy, perr = search.policy(C.scaffold, sp)
  if not policy then error("agent: " .. perr, 0) end
  policy.max_nodes = C.budgets.max_nodes or policy.max_nodes
  J.state.sessions = (J.state.sessions or 0) + 1
  J.state.gpu_seconds, J.state.stopped = gpu_total(J), null
  local run = {journal = J, chat = deps.chat, coder = deps.coder, quiet = deps.quiet, policy = policy,
               budget = budget.new(C.budgets, J.state, C.prices), statement = taskmod.statement(m, t),
               rules = "- " .. table.concat(t.rules, "\n- "), done0 = J:count(), runner = M.node_runner(J)}
  run.hint = C.hint ~= null and C.hint and taskmod.hint(m.root, t, C.hint) or nil
  score_root(run)
  if policy.sync then policy:sync(J) end   -- a scaffold's own record of the journal (greedy: git, TSV)
  while true do
    local reason = run.budget:check_node(J:count())
    if reason then return stop(run, reason) end
    local step, why = policy:next(J)
    if not step then return stop(run, why) end
    local batch = run.runner and policy.batch and policy:batch(J)
    local r, sreason
    if batch and #batch > 1 then r, sreason = M.run_batch(run, batch) else r, sreason = M.run_node(run, step) end
    if r == "stopped" then return stop(run, sreason) end
    if policy.sync then policy:sync(J) end
    run.budget:sync()
    J:save_state()
    M.progress(run)
  end
end

-- copies the recipe files of src (journal.code_files: .lua, .cu, .cuh) over those of ws (a
-- chain's start: the previous task's best node)
function M.copy_code(src, ws)
  local files = journal.code_files(src)
  if not files["recipe.lua"] then error("agent: " .. src .. " holds no recipe.lua (--start-from)", 0) end
  for path, text in pairs(files) do
    local sub = path:match("^(.*)/[^/]+$")
    if sub then H.mkdir(ws .. "/" .. sub) end
    local ok, err = journal.write_atomic(ws .. "/" .. path, text)
    if not ok then error("agent: cannot write " .. ws .. "/" .. path .. ": " .. tostring(err), 0) end
  end
end

-- a new run in dir: config {task, scale, runs, seed, hint, scaffold, search, budgets, prices,
-- score_args, llm_summary, model, base_url, start_from}; deps {chat, coder, quiet}
function M.start(dir, config, deps)
  local m, t = task_of(config)
  local J = journal.create(dir, config, function(ws)
    local rc = taskmod.init(m, t, ws, config.hint ~= null and config.hint or nil, true)
    if rc ~= 0 then error("agent: cannot make the start workspace in " .. ws, 0) end
    if type(config.start_from) == "string" then M.copy_code(config.start_from, ws) end
  end)
  return M.run(J, deps), J
end

-- continues the run in dir (budgets may be raised: overrides.budgets)
function M.resume(dir, deps, overrides)
  local J, err = journal.open(dir)
  if not J then error("agent: " .. err, 0) end
  for k, v in pairs(overrides and overrides.budgets or {}) do J.config.budgets[k] = v end
  if overrides and overrides.budgets and next(overrides.budgets) then journal.write_json(dir .. "/config.json", J.config) end
  return M.run(J, deps), J
end

return M
