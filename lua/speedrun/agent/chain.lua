-- speedrun.agent.chain: `speedrun agent chain --from A --to B`, the benchmark's cumulative speed-up
-- (reference/benchmark.md §6) done as intended: task A runs as a sweep over the given hint
-- regimes x scaffolds x models x seeds; the fastest valid agent node of all its cells becomes
-- the start (v_0's recipe files, `agent run --start-from`) of task A+1, and so on up to B. Node
-- times below 0.4x the start's are discarded as bogus, as the benchmark does; the chain stops when
-- a transition's gain (the relative reduction of the train time over its start) falls below
-- --min-gain. Every transition is reported (start and best times, reduction, the best node's FSR
-- against the human records). Resumable like a sweep: finished cells are skipped.
--   DIR/chain.json      {from, to, min_gain, transitions = [...], stopped}
--   DIR/task_NN/        a sweep folder (sweep.json, cells/<key>/...)
--   DIR/task_NN/start/  the start's recipe files (tasks after the first)
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local process = require "speedrun.process"
local journal = require "speedrun.agent.journal"
local sweep = require "speedrun.agent.sweep"
local loop = require "speedrun.agent.loop"

local M = {}
local fmt = string.format
local null = json.null

M.BOGUS = 0.4          -- node times below BOGUS x the start's are discarded
M.MIN_GAIN = 0.05      -- default --min-gain

local function num(v) return type(v) == "number" and v or nil end

-- the choice over a transition's nodes. entries: {{cell, id, t (train ms or nil), valid}}, id 0
-- being a cell's v_0 (the start). Returns {t_start (the mean of the valid v_0 times), best =
-- the fastest valid agent node with t >= bogus x t_start (ties: the first), discarded (valid
-- agent nodes below that), valid (valid agent nodes), gain = (t_start - best.t) / t_start}
function M.pick(entries, bogus)
  bogus = bogus or M.BOGUS
  local sum, n = 0, 0
  for _, e in ipairs(entries) do
    if e.id == 0 and e.valid and num(e.t) then sum, n = sum + e.t, n + 1 end
  end
  local r = {t_start = n > 0 and sum / n or nil, discarded = 0, valid = 0}
  for _, e in ipairs(entries) do
    if e.id > 0 and e.valid and num(e.t) then
      r.valid = r.valid + 1
      if r.t_start and e.t < bogus * r.t_start then r.discarded = r.discarded + 1
      elseif not r.best or e.t < r.best.t then r.best = e end
    end
  end
  if r.best and r.t_start then r.gain = (r.t_start - r.best.t) / r.t_start end
  return r
end

-- every node of a step's cells as pick's entries (with the node's dir and FSR)
function M.entries(step_dir, cells)
  local out = {}
  for _, c in ipairs(cells) do
    local J = journal.open(sweep.cell_dir(step_dir, c), true)
    for _, nd in ipairs(J and J:list() or {}) do
      local m = nd.results and nd.results.metrics or {}
      out[#out + 1] = {cell = c.key, id = nd.id, t = num(m.train_time_ms), valid = m.is_valid == true,
                       fsr = num(m.fsr), val_loss = num(m.val_loss), dir = nd.dir}
    end
  end
  return out
end

-- copies the best node's recipe files into the next task's start folder (replacing it)
local function write_start(best, start)
  os.execute("rm -rf " .. journal.sh(start))
  H.mkdir(start)
  loop.copy_code(best.dir .. "/workspace", start)
end

-- one transition's record for chain.json
local function transition(task, start_label, p, cells)
  local b = p.best
  return {task = task, start = start_label, t_start_ms = p.t_start or null, cells = #cells, valid_nodes = p.valid,
          discarded = p.discarded, best = b and {cell = b.cell, node = b.id, train_time_ms = b.t,
                                                 val_loss = b.val_loss or null, fsr = b.fsr or null} or null,
          reduction = p.gain or null}
end

-- runs the chain; o: the parsed options; returns the chain record and an exit code
function M.run(dir, o)
  local from, to = tonumber(o.from), tonumber(o.to)
  local min_gain = tonumber(o["min-gain"]) or M.MIN_GAIN
  local bogus = tonumber(o.bogus) or M.BOGUS
  H.mkdir(dir)
  local ro, err = sweep.run_options(o)
  if not ro then error(err, 0) end
  local rec = {schema = "speedrun.agent.chain/1", from = from, to = to, min_gain = min_gain, bogus = bogus, transitions = {},
               stopped = null}
  local start_label, start_dir = fmt("record %d", from), nil
  for task = from, to do
    local step = fmt("%s/task_%02d", dir, task)
    local spec, serr = sweep.spec_of(o, {task})
    if not spec then error(serr, 0) end
    ro.start_from = start_dir and {[task] = H.realpath(start_dir)} or nil
    local cells, counts = sweep.run(step, spec, ro)
    if counts.pending > 0 or counts.failed > 0 then
      rec.stopped = {task = task, reason = fmt("task %d: %d cell(s) failed, %d unfinished", task, counts.failed,
                                               counts.pending)}
      break
    end
    local p = M.pick(M.entries(step, cells), bogus)
    local t = transition(task, start_label, p, cells)
    rec.transitions[#rec.transitions + 1] = t
    journal.write_json(dir .. "/chain.json", rec)
    if not p.best then
      rec.stopped = {task = task, reason = fmt("task %d: no valid node (of %d) at or above %.1fx the start's time",
                                               task, p.valid, bogus)}
      break
    end
    if not p.gain or p.gain < min_gain then
      rec.stopped = {task = task, reason = fmt("task %d: gain %s below --min-gain %g", task,
                                               p.gain and fmt("%.4f", p.gain) or "unknown", min_gain)}
      break
    end
    if task < to then
      start_dir = fmt("%s/task_%02d/start", dir, task + 1)
      write_start(p.best, start_dir)
      start_label = fmt("task %d: %s/v_%d", task, p.best.cell, p.best.id)
    end
  end
  if rec.stopped == null then rec.stopped = {task = to, reason = "done: tasks " .. from .. "-" .. to} end
  journal.write_json(dir .. "/chain.json", rec)
  local code = rec.stopped.reason:match("cell%(s%) failed") and 1 or 0
  return rec, code
end

function M.print_table(rec)
  print(fmt("%-5s %-44s %10s %10s %9s %7s  %s", "task", "start", "start ms", "best ms", "reduction", "FSR",
            "best node"))
  for _, t in ipairs(rec.transitions) do
    local b = t.best ~= null and t.best or nil
    print(fmt("%-5d %-44s %10s %10s %9s %7s  %s", t.task, t.start,
              num(t.t_start_ms) and fmt("%.1f", t.t_start_ms) or "-", b and fmt("%.1f", b.train_time_ms) or "-",
              num(t.reduction) and fmt("%.1f%%", 100 * t.reduction) or "-",
              b and num(b.fsr) and fmt("%.3f", b.fsr) or "-", b and fmt("%s/v_%d", b.cell, b.node) or "-"))
  end
  print("stopped: " .. rec.stopped.reason)
end

M.USAGE = [[
usage: speedrun agent chain --from A --to B --models LIST [--min-gain G] [--out DIR] [sweep options]
The cumulative speed-up: task A is run as a sweep (every --hints x --scaffolds x --models x
--seeds cell); its fastest valid agent node (times below 0.4x the start's discarded) becomes the
start of task A+1, and so on to task B. Stops when a transition's gain, the relative reduction of
the train time over its start, is below --min-gain (default 0.05). Writes DIR/chain.json and
DIR/task_NN/ (sweep folders); run the same command again to resume.
  --from A  --to B       the first and last task
  --min-gain G           the smallest gain to go on (a fraction: 0.05 = 5 % faster than the start;
                         negative: go on even when slower, e.g. -1 unless twice as slow)
  --bogus R              node times below R x the start's are discarded (default 0.4, the
                         benchmark's rule; 0 keeps every valid node)
  --out DIR              the chain's folder (default runs/chain-<time>)
  The grid, runner and run options of `speedrun agent sweep` (--hints, --scaffolds, --models,
  --seeds, --backend, --jobs, --gpus, --base-url, --scale, --max-nodes, ...) apply to every task.
]]

function M.main(args)
  local cli = require "speedrun.agent.cli"
  local o, pos = cli.parse(args, sweep.allowed(), sweep.OWN_SPEC)
  local function die(msg) io.stderr:write("speedrun agent chain: ", msg, "\n") return 2 end
  if not o then return die(pos .. "\n" .. M.USAGE) end
  if o.help then io.stdout:write(M.USAGE) return 0 end
  if #pos > 0 then return die("chain takes no positional argument ('" .. pos[1] .. "')\n" .. M.USAGE) end
  if o.tasks then return die("chain takes --from and --to, not --tasks") end
  if not o.from or not o.to then return die("chain needs --from and --to\n" .. M.USAGE) end
  if tonumber(o.to) < tonumber(o.from) then return die("--to must be at least --from") end
  local spec, err = sweep.spec_of(o, {tonumber(o.from)})
  if not spec then return die(err) end
  local tasks = {}
  for t = tonumber(o.from), tonumber(o.to) do tasks[#tasks + 1] = t end
  local ok, terr = sweep.check_tasks(tasks, spec.hints)
  if not ok then return die(terr) end
  local _, rerr = sweep.run_options(o)
  if rerr then return die(rerr) end
  local dir = o.out or fmt("runs/chain-%s", os.date("%Y%m%d-%H%M%S"))
  process.trap_signals()
  local rec, code = M.run(dir, o)
  M.print_table(rec)
  print("chain: " .. dir .. "/chain.json")
  return code
end

return M
