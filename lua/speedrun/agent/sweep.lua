-- speedrun.agent.sweep: `speedrun agent sweep`, a study as one command: every cell of tasks x hint
-- regimes x scaffolds x models x seeds is one agent run (`speedrun agent run`, or `resume` for a
-- cell that was interrupted) in its own folder, run as a job by speedrun.agent.runner (local:
-- one cell per GPU, or N on the CPU; slurm: one array). Finished cells are skipped, so the same
-- command resumes a sweep after a kill; a cell still running from a dead sweep (its job's handle
-- alive) is waited for, never started twice. docs/agent.md "A study from the command line".
--   DIR/sweep.json                 the grid, the options and every cell's status
--   DIR/cells/<key>/               the cell's agent run (config.json, state.json, v_K/...)
--   DIR/cells/<key>/cell.json      {task, hint_regime, scaffold, model, seed, status, ...}
--   DIR/cells/<key>/agent.log      the run's output
--   DIR/jobs/                      the runner's job scripts (slurm)
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local process = require "speedrun.process"
local journal = require "speedrun.agent.journal"
local hints = require "speedrun.agent.hints"
local runner = require "speedrun.agent.runner"
local search = require "speedrun.agent.search"

local M = {}
local fmt = string.format
local sh = journal.sh
local null = json.null

-- ---------------------------------------------------------------------------------------------
-- the grid

-- "1-4" / "1,3,5-6" -> {1, 2, 3, 4}; nil, message
function M.int_list(s, what)
  local out = {}
  for part in tostring(s):gmatch("[^,]+") do
    local a, b = part:match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
    a, b = tonumber(a), tonumber(b)
    if not a then a = tonumber(part:match("^%s*(%d+)%s*$")) b = a end
    if not a or b < a then return nil, fmt("%s: '%s' is not a number or a range like 1-4", what, part) end
    for i = a, b do out[#out + 1] = i end
  end
  if #out == 0 then return nil, what .. ": empty list" end
  return out
end

-- --seeds: a count ("3" = seeds 1, 2, 3) or a list / range ("0,7", "4-6")
function M.seed_list(s)
  if tostring(s):match("^%d+$") then
    local n = tonumber(s)
    if n < 1 then return nil, "--seeds: a count of at least 1" end
    local out = {}
    for i = 1, n do out[i] = i end
    return out
  end
  return M.int_list(s, "--seeds")
end

local function str_list(s)
  local out = {}
  for part in tostring(s):gmatch("[^,]+") do out[#out + 1] = (part:gsub("^%s+", ""):gsub("%s+$", "")) end
  return out
end
M.str_list = str_list

-- a cell's folder name: t01-L1+L2-aide-<model>-s1 (the model's characters other than letters,
-- digits and ._- become _)
function M.key(c)
  local model = tostring(c.model or "none"):gsub("[^%w._-]", "_")
  return fmt("t%02d-%s-%s-%s-s%d", c.task, c.hint_regime, c.scaffold, model, c.seed)
end

-- the cells of spec {tasks, hints, scaffolds, models, seeds}, in that nesting order
function M.cells(spec)
  local out = {}
  for _, t in ipairs(spec.tasks) do
    for _, h in ipairs(spec.hints) do
      for _, s in ipairs(spec.scaffolds) do
        for _, m in ipairs(spec.models) do
          for _, seed in ipairs(spec.seeds) do
            local c = {task = t, hint_regime = h, scaffold = s, model = m, seed = seed}
            c.key = M.key(c)
            out[#out + 1] = c
          end
        end
      end
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- a cell on disk

function M.cell_dir(dir, c) return dir .. "/cells/" .. c.key end

-- the cell's state from its folder: "done" (its run stopped: state.json's stopped), "started"
-- (a run exists, unfinished), "new"; plus the stop reason and the node count
function M.disk_state(cdir)
  local config = journal.read_json(cdir .. "/config.json")
  if type(config) ~= "table" then return "new" end
  local st = journal.read_json(cdir .. "/state.json")
  local stopped = type(st) == "table" and st.stopped
  if type(stopped) == "table" then return "done", stopped.reason, stopped.nodes, st.sessions end
  return "started", nil, nil, type(st) == "table" and st.sessions or 0
end

-- writes cell.json: the cell's coordinates and `fields` (status, handle, ...)
function M.write_cell(cdir, c, fields)
  local old = journal.read_json(cdir .. "/cell.json") or {}
  local t = {schema = "speedrun.agent.cell/1", key = c.key, task = c.task, hint_regime = c.hint_regime,
             hint = hints.levels(c.hint_regime) or null, scaffold = c.scaffold, model = c.model, seed = c.seed,
             start_from = c.start_from or null}
  for _, k in ipairs {"status", "stop_reason", "nodes", "handle", "exit", "started_at", "finished_at", "sessions"} do
    t[k] = old[k] == nil and null or old[k]
  end
  for k, v in pairs(fields or {}) do t[k] = v end
  H.mkdir(cdir)
  return journal.write_json(cdir .. "/cell.json", t)
end

local function iso_now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

-- the command line of a cell's job: `speedrun agent run ...` for a new cell, `resume` for a started one
function M.cell_command(c, cdir, o, state)
  local exe = sh(H.self_exe())
  if state == "started" then
    local parts = {exe, "agent", "resume", sh(cdir), "--quiet"}
    for _, a in ipairs(o.budget_args or {}) do parts[#parts + 1] = sh(a) end
    return table.concat(parts, " ")
  end
  local parts = {exe, "agent", "run", "--task", tostring(c.task), "--scaffold", sh(c.scaffold), "--seed",
                 tostring(c.seed), "--out", sh(cdir), "--quiet"}
  local lv = hints.levels(c.hint_regime)
  if lv then parts[#parts + 1] = "--hint" parts[#parts + 1] = lv end
  if c.model and c.model ~= "none" then parts[#parts + 1] = "--model" parts[#parts + 1] = sh(c.model) end
  if c.start_from then parts[#parts + 1] = "--start-from" parts[#parts + 1] = sh(c.start_from) end
  for _, a in ipairs(o.run_args or {}) do parts[#parts + 1] = sh(a) end
  return table.concat(parts, " ")
end

-- ---------------------------------------------------------------------------------------------
-- running the grid

-- waits while cells started by an earlier (dead) sweep still run: their handles in cell.json, and
-- a job of this machine whose command line names the cell's folder though no handle was recorded
-- (the sweep killed between starting it and writing cell.json: started again, it ran twice)
local function wait_orphans(dir, cells, quiet)
  while true do
    local alive, procs = {}, runner.cmdlines()
    for _, c in ipairs(cells) do
      local cdir = M.cell_dir(dir, c)
      local cj = journal.read_json(cdir .. "/cell.json")
      if (type(cj) == "table" and cj.status == "running" and runner.alive(cj.handle, c.key))
         or (not (type(cj) == "table" and cj.status == "done") and runner.running_with(cdir, procs)) then
        alive[#alive + 1] = c.key
      end
    end
    if #alive == 0 then return end
    if not quiet then io.stderr:write(fmt("sweep: waiting for %d cell(s) still running: %s\n", #alive, alive[1])) end
    process.sleep(1)
  end
end

-- whether the cell's log ends with the closing line of a run (`agent run in DIR stopped: ...`)
local function closed(cdir)
  local f = io.open(cdir .. "/agent.log", "rb")
  if not f then return false end
  local last = ""
  for line in f:lines() do if line:find("%S") then last = line end end
  f:close()
  return last:find("agent run in ", 1, true) == 1 and last:find(" stopped: ", 1, true) ~= nil
end

-- the status of every cell, refreshed from the disk (cell.json is brought up to date)
function M.refresh(dir, cells)
  local counts = {done = 0, failed = 0, pending = 0}
  for _, c in ipairs(cells) do
    local cdir = M.cell_dir(dir, c)
    local state, reason, nodes, sessions = M.disk_state(cdir)
    local cj = journal.read_json(cdir .. "/cell.json") or {}
    if state == "done" then
      -- a process that still runs writes its own report and closing line (an orphan of a dead
      -- sweep between its stop and its report: finishing it here too gave two closing lines)
      local live = cj.status == "running" and cj.handle and runner.alive(cj.handle, c.key)
      if cj.status ~= "done" and not live then
        -- a run that stopped but whose process died before its report and closing log line
        -- (killed in between): finished here as `agent run` would have finished it
        if not closed(cdir) then
          local line = require("speedrun.agent.report").finish(cdir, reason)
          local f = io.open(cdir .. "/agent.log", "a")
          if f then f:write(line, "\n") f:close() end
        end
        M.write_cell(cdir, c, {status = "done", stop_reason = reason, nodes = nodes, sessions = sessions,
                               finished_at = cj.finished_at ~= null and cj.finished_at or iso_now()})
      end
      c.status = "done"
    elseif cj.status == "failed" then c.status = "failed"
    else c.status = "pending" end
    counts[c.status] = counts[c.status] + 1
  end
  return counts
end

-- sweep.json: the grid, the options and the cells' statuses
function M.write_index(dir, spec, cells)
  local list = {}
  for _, c in ipairs(cells) do
    list[#list + 1] = {key = c.key, task = c.task, hint_regime = c.hint_regime, scaffold = c.scaffold,
                       model = c.model, seed = c.seed, status = c.status or "pending", dir = "cells/" .. c.key}
  end
  return journal.write_json(dir .. "/sweep.json", {schema = "speedrun.agent.sweep/1", spec = spec,
                                                  updated_at = iso_now(), cells = list})
end

-- runs (or resumes) every unfinished cell. spec {tasks, hints, scaffolds, models, seeds};
-- o {run_args, budget_args, backend, slots, gpus, sbatch_args, poll, quiet, retry_failed,
-- start_from = {[task] = dir}}; returns the cells (with status) and the counts
function M.run(dir, spec, o)
  H.mkdir(dir)
  H.mkdir(dir .. "/cells")
  local cells = M.cells(spec)
  for _, c in ipairs(cells) do c.start_from = o.start_from and o.start_from[c.task] or nil end
  M.refresh(dir, cells)
  M.write_index(dir, spec, cells)
  wait_orphans(dir, cells, o.quiet)
  M.refresh(dir, cells)
  local R, err = runner.new {backend = o.backend, slots = o.slots, gpus = o.gpus, dir = dir .. "/jobs", poll = o.poll,
                             sbatch_args = o.sbatch_args, cpu = o.cpu, max_gpus = o.max_gpus}
  if not R then error("sweep: " .. err, 0) end
  local jobs, by_name = {}, {}
  for _, c in ipairs(cells) do
    if c.status == "pending" or (c.status == "failed" and o.retry_failed ~= false) then
      local cdir = M.cell_dir(dir, c)
      local state = M.disk_state(cdir)
      H.mkdir(cdir)
      local job = {name = c.key, cmd = M.cell_command(c, cdir, o, state), log = cdir .. "/agent.log", cwd = o.cwd}
      jobs[#jobs + 1], by_name[c.key] = job, c
    end
  end
  if not o.quiet then
    io.stderr:write(fmt("sweep: %d cells, %d to run (%d finished)\n", #cells, #jobs, #cells - #jobs))
  end
  local done = 0
  R:run(jobs, {
    on_start = function(job, handle)
      local c = by_name[job.name]
      M.write_cell(M.cell_dir(dir, c), c, {status = "running", handle = handle, started_at = iso_now()})
    end,
    on_done = function(job, r)
      local c = by_name[job.name]
      local cdir = M.cell_dir(dir, c)
      local state, reason, nodes, sessions = M.disk_state(cdir)
      -- the folder is the truth: a run that stopped is done whatever its job's end state says
      local status = state == "done" and "done" or (r.state == "CANCELLED" and "pending" or "failed")
      M.write_cell(cdir, c, {status = status, exit = r.rc, stop_reason = reason or null, nodes = nodes or null,
                             sessions = sessions or null, finished_at = iso_now()})
      done = done + 1
      if not o.quiet then
        io.stderr:write(fmt("sweep: %d/%d %s %s%s\n", done, #jobs, c.key, status,
                            reason and (" (" .. reason .. ")") or ""))
      end
    end,
    interrupted = process.interrupted,
  })
  local counts = M.refresh(dir, cells)
  M.write_index(dir, spec, cells)
  return cells, counts
end

-- ---------------------------------------------------------------------------------------------
-- the command line

M.USAGE = [[
usage: speedrun agent sweep --tasks LIST --models LIST [--hints LIST] [--scaffolds LIST] [--seeds N|LIST]
                            [--out DIR] [runner options] [options of `speedrun agent run`]
Runs every cell of tasks x hint regimes x scaffolds x models x seeds as one agent run in
DIR/cells/<key>/ (cell.json: the cell's coordinates and status). Run the same command again to
resume: finished cells are skipped, interrupted ones resumed.
  --tasks LIST           tasks, e.g. 1-4 or 1,3
  --hints LIST           hint regimes: none, L1, L2, L3, L1+L2, L1+L2+L3 (default none; all6 = the six)
  --scaffolds LIST       aide, flat, tree, forest, multi-aide, greedy (default aide)
  --models LIST          model names sent to --base-url (with --coder-cmd: optional)
  --seeds N|LIST         N seeds 1..N (default 1), or a list / range like 0,7 or 4-6
  --out DIR              the sweep's folder (default runs/sweep-<time>)
  --backend B            local (default) or slurm
  --jobs N               cells at once on a CPU-only machine (default 1); with GPUs, one per GPU
                         (--jobs then uses at most N of them)
  --gpus LIST|none       the GPUs to use (default CUDA_VISIBLE_DEVICES, else nvidia-smi's); none: the CPU
  --sbatch-args ARGS     extra sbatch arguments (slurm), split at blanks, e.g. "--gres=gpu:1 -p gpu"
  --poll S               seconds between polls of the jobs (default 1)
  --no-retry-failed      leave cells whose run failed (exit status not 0) as they are
  --list                 print the cells and their status from DIR, run nothing
  Options passed to every cell's `speedrun agent run` (see `speedrun agent run --help`): --base-url,
  --api-key-env, --temperature, --coder-cmd, --coder-timeout, --scale, --runs, --n-initial,
  --debug-prob, --max-bug-depth, --n-iterations, --max-nodes, --max-tokens, --max-cost,
  --max-gpu-seconds, --max-wall-seconds, --price-prompt, --price-completion, --no-llm-summary,
  --device, --steps, --time-limit, --threads, --data, --train-files, --val-files, --calibration,
  --parallel, --node-backend, --node-sbatch-args.
]]

M.OWN_SPEC = {tasks = "str", hints = "str", scaffolds = "str", models = "str", seeds = "str", backend = "str",
              jobs = "int", gpus = "str", ["sbatch-args"] = "str", poll = "num", ["no-retry-failed"] = "flag",
              from = "int", to = "int", ["min-gain"] = "real", bogus = "prob", list = "flag"}
M.PASS = {"base-url", "api-key-env", "temperature", "coder-cmd", "coder-timeout", "scale", "runs", "n-initial",
          "debug-prob", "max-bug-depth", "n-iterations", "max-nodes", "max-tokens", "max-cost", "max-gpu-seconds",
          "max-wall-seconds", "price-prompt", "price-completion", "no-llm-summary", "device", "steps", "time-limit",
          "threads", "data", "train-files", "val-files", "calibration", "parallel", "node-backend", "node-sbatch-args"}
local BUDGET = {["max-nodes"] = true, ["max-tokens"] = true, ["max-cost"] = true, ["max-gpu-seconds"] = true,
                ["max-wall-seconds"] = true}

-- the options a sweep (or a chain, with its own extra names) takes
function M.allowed(extra)
  local a = {out = true, quiet = true, help = true}
  for k in pairs(M.OWN_SPEC) do a[k] = true end
  for _, k in ipairs(M.PASS) do a[k] = true end
  for _, k in ipairs(extra or {}) do a[k] = true end
  return a
end

-- the runner and pass-through part of the options: o (parsed) -> opts for M.run | nil, message
function M.run_options(o)
  local cli = require "speedrun.agent.cli"
  local r = {run_args = {}, budget_args = {}, backend = o.backend or "local", slots = tonumber(o.jobs) or 1,
             max_gpus = tonumber(o.jobs),
             poll = tonumber(o.poll) or 1, quiet = o.quiet, retry_failed = not o["no-retry-failed"]}
  for _, k in ipairs(M.PASS) do
    if o[k] then
      -- --name=value: a value may start with -- (--node-sbatch-args=--gres=gpu:1)
      local a = cli.SPEC[k] == "flag" and ("--" .. k) or ("--" .. k .. "=" .. o[k])
      r.run_args[#r.run_args + 1] = a
      if BUDGET[k] then r.budget_args[#r.budget_args + 1] = a end
    end
  end
  if o.gpus == "none" then r.gpus, r.cpu = {}, true
  elseif o.gpus then r.gpus = str_list(o.gpus) end
  if o["sbatch-args"] then
    r.sbatch_args = {}
    for a in o["sbatch-args"]:gmatch("%S+") do r.sbatch_args[#r.sbatch_args + 1] = a end
  end
  if r.backend ~= "local" and r.backend ~= "slurm" then return nil, "--backend must be local or slurm" end
  if not o.models and not o["coder-cmd"] then return nil, "a sweep needs --models (or --coder-cmd)" end
  if o.models and not o["base-url"] and not o["coder-cmd"] then return nil, "--models needs --base-url" end
  r.cwd = H.realpath(".")
  return r
end

-- the grid part: o -> spec | nil, message (tasks from --tasks, or `tasks` given: a chain's step)
function M.spec_of(o, tasks)
  local spec = {}
  local err
  if not tasks then
    if not o.tasks then return nil, "a sweep needs --tasks" end
    tasks, err = M.int_list(o.tasks, "--tasks")
    if not tasks then return nil, err end
  end
  spec.tasks = tasks
  spec.hints, err = hints.list(o.hints or "none")
  if not spec.hints then return nil, err end
  spec.scaffolds = str_list(o.scaffolds or "aide")
  for _, s in ipairs(spec.scaffolds) do
    if not search.PRESETS[s] then return nil, select(2, search.policy(s)) end
  end
  spec.models = o.models and str_list(o.models) or {"none"}
  spec.seeds, err = M.seed_list(o.seeds or "1")
  if not spec.seeds then return nil, err end
  return spec
end

-- every task exists and has the hint files its regimes need; nil, message otherwise (a cell
-- would otherwise fail, or an L1 cell run without its hint)
function M.check_tasks(tasks, regimes)
  local taskmod = require "speedrun.task"
  local m, err = taskmod.manifest()
  if not m then return nil, tostring(err) end
  for _, id in ipairs(tasks) do
    local t = taskmod.get(m, id)
    if not t then return nil, "no task " .. id end
    for _, r in ipairs(regimes) do
      local lv = hints.levels(r)
      if lv then
        local ok, herr = taskmod.hint(m.root, t, lv)
        if not ok then return nil, fmt("task %d, hint regime %s: %s", id, r, herr) end
      end
    end
  end
  return true
end

local function die(msg, code)
  io.stderr:write("speedrun agent sweep: ", msg, "\n")
  return code or 2
end

-- a table of the cells: key, status, nodes, stop reason
function M.print_table(cells)
  print(fmt("%-44s %-8s %5s  %s", "cell", "status", "nodes", "stop"))
  for _, c in ipairs(cells) do
    local cj = c.dir and journal.read_json(c.dir .. "/cell.json") or {}
    print(fmt("%-44s %-8s %5s  %s", c.key, c.status or "-", tostring(cj.nodes ~= null and cj.nodes or "-"),
              tostring(cj.stop_reason ~= null and cj.stop_reason or "-")))
  end
end

function M.main(args)
  local cli = require "speedrun.agent.cli"
  local o, pos = cli.parse(args, M.allowed(), M.OWN_SPEC)
  if not o then return die(pos .. "\n" .. M.USAGE) end
  if o.help then io.stdout:write(M.USAGE) return 0 end
  if #pos > 0 then return die("sweep takes no positional argument ('" .. pos[1] .. "')\n" .. M.USAGE) end
  local spec, err = M.spec_of(o)
  if not spec then return die(err) end
  local ok, terr = M.check_tasks(spec.tasks, spec.hints)
  if not ok then return die(terr) end
  local ro, rerr = M.run_options(o)
  if not ro then return die(rerr) end
  local dir = o.out or fmt("runs/sweep-%s", os.date("%Y%m%d-%H%M%S"))
  if o.list then
    local cells = M.cells(spec)
    local counts = M.refresh(dir, cells)
    for _, c in ipairs(cells) do c.dir = M.cell_dir(dir, c) end
    M.print_table(cells)
    print(fmt("sweep in %s: %d cells, %d done, %d failed, %d pending", dir, #cells, counts.done, counts.failed,
              counts.pending))
    return 0
  end
  process.trap_signals()
  local cells, counts = M.run(dir, spec, ro)
  for _, c in ipairs(cells) do c.dir = M.cell_dir(dir, c) end
  if not o.quiet then M.print_table(cells) end
  print(fmt("sweep in %s: %d cells, %d done, %d failed, %d pending", dir, #cells, counts.done, counts.failed,
            counts.pending))
  return (counts.failed > 0 or counts.pending > 0) and 1 or 0
end

return M
