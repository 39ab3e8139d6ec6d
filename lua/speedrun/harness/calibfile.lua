-- speedrun.harness.calibfile: the calibration file (`speedrun calibrate` writes it, `score` reads
-- it): where it is, reading it (junk is an error, never an empty file to overwrite), and storing
-- an entry or a tune search's probe into it; the entries a task's score needs (task_refs), and
-- whether they were calibrated from this checkout's record recipes (recipe_note).
-- {schema, entries = {[card] = {[scale] = {[reference] = entry}}}, searches = (tune searches not
-- finished: harness/tune.lua)}
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local tune = require "speedrun.harness.tune"
local util = require "speedrun.util"
local output = require "speedrun.harness.output"
local dataid = require "speedrun.harness.dataid"
local stream = require "speedrun.harness.stream"
local summary = require "speedrun.harness.summary"

local M = {}
local fmt = string.format
M.SCHEMA = "speedrun.calibration/1"

-- whether an entry passes the score's own rule (summary.rule: every run completed, the mean
-- significantly below the target; one run: valid), and a note when it passes with some runs above
-- the target (a noisy record's single runs may miss it; its score is of the mean). nil and why when not
function M.passes(e, alpha)
  local p, done = type(e.p) == "number" and e.p or nil, math.tointeger(e.completed) or 0
  local rule = summary.rule(done == e.runs, done, p, alpha)
  if rule == "incomplete" then return nil, fmt("%d of %d runs did not complete", e.runs - done, e.runs) end
  if rule == "one" then
    if e.all_valid then return true, "" end
    return nil, "its run is not valid"
  end
  if rule == "fail" then return nil, fmt("does not pass a score: p = %s, need < %g", p and fmt("%.3g", p) or "n/a", alpha) end
  local above = 0
  for _, v in ipairs(type(e.val_losses) == "table" and e.val_losses or {}) do
    if type(e.target_val_loss) == "number" and v > e.target_val_loss then above = above + 1 end
  end
  return true, above > 0 and fmt("%d of %d runs above the target; the mean passes, p = %.3g", above, e.runs, p) or ""
end

-- --calibration, else $SPEEDRUN_CALIBRATION, else the checkout's calibration.json
function M.path(o)
  return o.calibration or os.getenv("SPEEDRUN_CALIBRATION") or (H.source_dir() .. "/calibration.json")
end

-- the file's table (a new one when there is no file); nil and why when the file is there but not
-- a calibration file (never treated as empty: the next write would lose it)
function M.load(path)
  local s = util.read_file(path)
  if not s then
    if H.realpath(path) then return nil, fmt("the calibration file %s cannot be read", path) end
    return {schema = M.SCHEMA, entries = {}}
  end
  local c, jerr = json.decode(s)
  if type(c) ~= "table" or #c > 0 or (c.entries ~= nil and type(c.entries) ~= "table")
     or (c.searches ~= nil and type(c.searches) ~= "table") then
    return nil, fmt("the calibration file %s is not one (%s); fix or move it, nothing was written to it", path,
      jerr or "not an object with an `entries` object")
  end
  c.entries = c.entries or {}
  return c
end

-- M.load inside a command that already read the file once: an error if it became junk since
local function reload(path)
  local c, err = M.load(path)
  if not c then error(err, 0) end
  return c
end

local function write(path, calib) output.write_file(path, json.encode(calib, true) .. "\n") end

-- an entry into the file (raises when the file became junk); a re-timed budget keeps how it was
-- tuned; a tuned one ends its search record
function M.store(path, card, scale, name, entry)
  local calib = reload(path)
  calib.schema = M.SCHEMA
  calib.entries[card] = calib.entries[card] or {}
  calib.entries[card][scale] = calib.entries[card][scale] or {}
  local old = calib.entries[card][scale][name]
  if not entry.tune and type(old) == "table" and type(old.tune) == "table" and old.tune.steps == entry.steps then
    entry.tune = old.tune  -- re-timed at the tuned budget: how it was found still holds
  end
  calib.entries[card][scale][name] = entry
  if entry.tune then tune.forget(calib, card, scale, name) end
  write(path, calib)
end

-- one finished probe of a search in progress (tune.note), written as it ends: a cut search resumes
function M.note(path, card, scale, name, target, rec, confirm, key)
  local calib = reload(path)
  tune.note(calib, card, scale, name, target, rec, confirm, key)
  write(path, calib)
end

-- a record's reference name in the file
function M.record_name(n) return fmt("record_%02d", n) end

-- the card and scale a command reads from calib: --card, else the file's only card, else
-- this_card; --scale, else the card's only scale, else proxy. nil and why when the file has none
function M.pick(calib, o, this_card, path)
  local function only(t)
    local k, n = nil, 0
    for key in pairs(t or {}) do k, n = key, n + 1 end
    return n == 1 and k or nil
  end
  local card = o.card or only(calib.entries) or this_card
  if not calib.entries[card] then return nil, fmt("no entries for the card %s in %s", card, path) end
  local scale = (o.scale and o.scale ~= "auto") and o.scale or only(calib.entries[card]) or "proxy"
  if not calib.entries[card][scale] then return nil, fmt("no entries at scale %s for %s in %s", scale, card, path) end
  return card, scale
end

-- the sha-256 of a recipe's source (entries' `recipe_sha256`, a tune search's key), nil when unreadable
function M.recipe_sha256(path)
  local s = util.read_file(path)
  return s and H.sha256(s)
end

-- a note when a task's reference (its entry recorded the source it was calibrated from) was
-- calibrated from another version of its record's recipe than this checkout's tasks/record_NN
-- (the record changed since: its time is not the recipe's any more); nil when they agree or the
-- entry predates the field
function M.recipe_note(task, ref_i, ref_next)
  local stale = {}
  for i, r in ipairs {ref_i, ref_next} do
    local name = M.record_name(task + i - 1)
    local now = M.recipe_sha256(H.source_dir() .. "/tasks/" .. name .. "/recipe.lua")
    if type(r.recipe_sha256) == "string" and now and r.recipe_sha256 ~= now then stale[#stale + 1] = name end
  end
  if #stale == 0 then return nil end
  return fmt("%s calibrated from another version of %s than this checkout's: re-run `speedrun calibrate` for them",
    table.concat(stale, " and "), #stale > 1 and "their recipes" or "its recipe")
end

-- the CPU threads a CPU score of task N runs with: its references' (entries record `cpu_threads`
-- since the sixteenth session; a CPU time is of its thread count; an entry without the field takes
-- the other's), which --threads may only repeat; o.threads as given on a GPU or against entries
-- without the field. nil, why when it cannot
function M.cpu_threads(o, ref_i, ref_next, task, calib_path)
  if o.device == "cuda" then return o.threads end
  local ti, tn = ref_i.cpu_threads, ref_next.cpu_threads
  local t = type(ti) == "number" and ti or type(tn) == "number" and tn   -- an entry without the field: the other's
  if not t then return o.threads end
  if type(ti) == "number" and type(tn) == "number" and ti ~= tn then
    return nil, fmt("the references of task %d in %s were timed with different CPU thread counts (%s: %d, %s: %s): "
      .. "calibrate them again with one --threads", task, calib_path, M.record_name(task), ti, M.record_name(task + 1), tn)
  end
  if o.threads and tonumber(o.threads) ~= t then
    return nil, fmt("the references of task %d in %s were timed with %d CPU threads, this score asks for %s: score with "
      .. "--threads %d (or without --threads), or calibrate them again with --threads %s", task, calib_path, t, o.threads, t, o.threads)
  end
  return tostring(math.floor(t))
end

-- the runs of a score of task N at proxy scale: its references' budgets were tuned for scores of
-- tune.runs runs each, and their cuts' pass estimates (tune.loose) hold for at most that many (with
-- more runs, a cut whose mean sits below the target passes more often); the fewer of the two, which
-- --runs may lower, never raise. nil, why when it cannot
function M.task_runs(o, ref_i, ref_next, task, calib_path)
  local k
  for _, e in ipairs {ref_i, ref_next} do
    local r = type(e.tune) == "table" and tonumber(e.tune.runs)
    if r and (not k or r < k) then k = math.floor(r) end
  end
  if o.scale ~= "proxy" or not k then return o.runs end
  if o.runs and tonumber(o.runs) > k then
    return nil, fmt("--runs %s: the references of task %d in %s were tuned for scores of %d runs, and their 80 %% cuts "
      .. "are known to fail for at most that many: score with --runs %d or fewer (or without --runs)", o.runs, task, calib_path, k, k)
  end
  return o.runs or tostring(k)
end

-- the runs of a plain calibrate of one reference: --runs, else, at proxy scale, the runs of a score
-- its stored entry's budget was tuned for (tune.runs at the entry's steps: record 1's 10; its time
-- and its own pass, calibfile.passes, are then of that many), else k
function M.plain_runs(o, k, calib, card, name)
  if o.runs or o.scale ~= "proxy" then return k end
  local e = ((calib.entries[card] or {})[o.scale] or {})[name]
  local t = type(e) == "table" and type(e.tune) == "table" and e.tune or nil
  local n = t and t.steps == e.steps and math.tointeger(tonumber(t.runs))
  return n and n >= 2 and n or k
end

-- the calibration entries of task N (its start record) and N+1 (its target record), or nil and
-- why not. The target's validation loss and size become the runs', whatever the workspace says:
-- no entry, no score (never a fallback to the workspace's own target).
function M.task_refs(o, calib, card, task, calib_path, data_id)
  local by_card = calib.entries[card] or {}
  local by_scale = by_card[o.scale] or {}
  local ref_i, ref_next = by_scale[M.record_name(task)], by_scale[M.record_name(task + 1)]
  for _, it in ipairs {{ref_i, task}, {ref_next, task + 1}} do
    local e = it[1]
    if type(e) == "table" and (e.mean_ms == json.null or e.mean_ms == nil and e.tune) then
      return nil, fmt("the calibration of %s at scale %s in %s has no train time (its timing runs did not complete): "
        .. "time it with `speedrun calibrate --tasks %d --scale %s`", M.record_name(it[2]), o.scale, calib_path, it[2], o.scale)
    end
    if type(e) ~= "table" or type(e.mean_ms) ~= "number" or (it[2] == task + 1 and
        (type(e.target_val_loss) ~= "number" or type(e.val_tokens) ~= "number")) then
      return nil, fmt("no calibration for %s at scale %s on %s in %s (task %d needs records %d and %d): "
        .. "run `speedrun calibrate --tasks %d,%d --scale %s` first", M.record_name(it[2]), o.scale, card, calib_path,
        task, task, task + 1, task, task + 1, o.scale)
    end
    -- the proxy track is tight by construction (tasks/CALIBRATION.md): a reference whose budget was
    -- not tuned to the target has slack, and a start recipe cut to that slack would score as a speed-up
    if o.scale == "proxy" and (type(e.tune) ~= "table" or e.tune.steps ~= e.steps or e.tune.target ~= e.target_val_loss) then
      return nil, fmt("the calibration of %s at scale proxy in %s is not of a budget tuned to its target (a "
        .. "reference with slack would let a cut recipe score): run `speedrun calibrate --tune-steps --tasks %d "
        .. "--scale proxy` first", M.record_name(it[2]), calib_path, it[2])
    end
    if e.timed_alone == false then
      return nil, fmt("the calibration of %s at scale %s in %s was timed while other runs shared the device "
        .. "(--tune-steps --untimed): re-time it with `speedrun calibrate --tasks %d --scale %s`", M.record_name(it[2]),
        o.scale, calib_path, it[2], o.scale)
    end
    -- and tight: a reference whose cut budget still passes would let a start recipe cut to it score
    local loose = o.scale == "proxy" and tune.loose(e.tune)
    if loose then
      return nil, fmt("the calibration of %s at scale proxy in %s is not tight: %s, so a recipe cut to that budget "
        .. "would score as a speed-up; re-tune it (`speedrun calibrate --tune-steps --tasks %d --scale proxy --runs-up-to 7`: "
        .. "a cut that fails but would pass too many scores is tight with more runs a score; where the cut still passes, "
        .. "at a target it misses: --target X, tasks/CALIBRATION.md)", M.record_name(it[2]), calib_path, loose, it[2])
    end
    local other = dataid.mismatch(e, data_id, fmt("%s at scale %s in %s", M.record_name(it[2]), o.scale, calib_path))
    if other then return nil, other end
  end
  local policy, why = stream.for_task(o, ref_i, ref_next, calib_path)   -- the runs start as the references' did
  if not policy then return nil, why end
  local threads, terr = M.cpu_threads(o, ref_i, ref_next, task, calib_path)   -- and compute with their CPU threads
  if terr then return nil, terr end
  local runs, rerr = M.task_runs(o, ref_i, ref_next, task, calib_path)   -- and as many runs as they were tuned for
  if rerr then return nil, rerr end
  o.threads, o.runs = threads, runs
  o.stream = policy
  o.target, o["val-tokens"] = tostring(ref_next.target_val_loss), tostring(math.floor(ref_next.val_tokens))
  return ref_i, ref_next
end

return M
