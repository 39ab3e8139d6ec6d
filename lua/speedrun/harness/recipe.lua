-- speedrun.harness.recipe: loading a recipe and checking its contract (docs/harness.md "The
-- recipe contract"), in the child. The recipe file must return a table with setup, train_step,
-- eval and a config of named scales; the chosen scale's table is checked and turned into the
-- run's plan: steps, batches, validation chunks, warm-up, observation and validation intervals.
local json = require "speedrun.json"
local report = require "speedrun.harness.report"
local deepcopy = require("speedrun.util").deepcopy

local fail, call = report.fail, report.call
local fmt = string.format
local load, type, ipairs, tostring, next, rawget = load, type, ipairs, tostring, next, rawget
local mfloor, mmin, mmax = math.floor, math.min, math.max
local real_open = io.open     -- captured before the sandbox replaces io.open
local dgetmetatable = debug.getmetatable   -- captured before the sandbox takes debug away

local M = {}

-- the whole file, read with the real io.open
function M.read_file(path)
  local f, err = real_open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

local function contract(what) fail("lua_error", "recipe contract: " .. what) end

-- the recipe table: the file run in `env`
function M.load(path, env)
  local src, err = M.read_file(path)
  if not src then fail("lua_error", "cannot read the recipe: " .. tostring(err)) end
  local chunk, lerr = load(src, "@" .. path, "t", env)
  if not chunk then fail("lua_error", lerr) end
  local recipe = call(chunk)
  if type(recipe) ~= "table" then contract("the recipe file must return a table (got " .. type(recipe) .. ")") end
  M.check_plain(recipe, "the recipe table", false)
  for _, f in ipairs(M.FIELDS) do
    local v, name, want = rawget(recipe, f[1]), "recipe." .. f[1], f[2]
    if v == nil and f[3] then contract(f[3]) end
    if v ~= nil and type(v) ~= want then contract(fmt("%s must be a %s (got %s)", name, want, type(v))) end
    if type(v) == "table" then M.check_plain(v, name, true) end
  end
  return recipe
end

-- the recipe's fields the harness reads: {name, type, the contract error when it is missing (nil:
-- optional)}. Tables among them must be plain (check_plain, deep)
M.FIELDS = {
  {"setup", "function", "the recipe has no function 'setup'"},
  {"train_step", "function", "the recipe has no function 'train_step'"},
  {"eval", "function", "the recipe has no function 'eval'"},
  {"config", "table", "the recipe has no config table"},
  {"schedule", "function"}, {"schedule_keys", "table"}, {"name", "string"}, {"cuda_graph", "boolean"},
  {"fuse", "boolean"},
}

-- t (and with deep, every table inside it) without a metatable: the harness reads the recipe table
-- and its config between the timed steps (plan, schedule, graph options), and an __index or
-- __pairs there would run recipe code off the clock
function M.check_plain(t, name, deep, seen)
  seen = seen or {}
  if seen[t] then return end
  seen[t] = true
  if dgetmetatable(t) ~= nil then
    contract(name .. " has a metatable: the harness reads it off the clock, so it must be a plain table")
  end
  for k, v in next, deep and t or {} do
    if type(v) == "table" then M.check_plain(v, name .. "." .. tostring(k), true, seen) end
  end
end


local function check_config(cfg, scale, config)
  local function need(cond, what) if not cond then contract(fmt("config.%s: %s", scale, what)) end end
  if type(cfg) ~= "table" then
    local names = {}
    for k in pairs(config) do names[#names + 1] = tostring(k) end
    table.sort(names)
    contract(fmt("the recipe has no scale '%s' (its scales: %s)", scale, table.concat(names, ", ")))
  end
  need(type(cfg.steps) == "number" and cfg.steps >= 1 and cfg.steps == mfloor(cfg.steps), "steps must be a positive integer")
  need(type(cfg.batch) == "table", "batch = {mode=, B=, T=, batch=} is required")
  local b = cfg.batch
  b.mode = b.mode or "bt"
  need(b.mode == "bt" or b.mode == "seq" or b.mode == "global", "batch.mode must be bt, seq or global")
  need(type(b.T) == "number" and b.T >= 1, "batch.T (sequence length) is required")
  if b.mode == "bt" then need(type(b.B) == "number" and b.B >= 1, "batch.B is required in mode bt") end
  if b.mode == "global" then need(type(b.batch) == "number" and b.batch >= 1, "batch.batch (tokens per step) is required in mode global") end
  need(type(cfg.target_val_loss) == "number", "target_val_loss is required")
  need(type(cfg.val_tokens) == "number" and cfg.val_tokens >= 1, "val_tokens is required")
end

local function tokens_per_step(b)
  if b.mode == "bt" then return b.B * b.T elseif b.mode == "seq" then return b.T else return b.batch end
end

-- scale auto: proxy on a GPU, demo on the CPU, else micro
local function pick_scale(scale, config, is_cuda)
  if scale ~= "auto" then return scale end
  if is_cuda then return config.proxy and "proxy" or "micro" end
  return config.demo and "demo" or "micro"
end

-- the config keys that count steps of the schedule (warm-up, warm-down...): recipe.schedule_keys,
-- else these; `--steps N --scale-schedule` (and the step tuner) scales them with the steps
M.SCHEDULE_KEYS = {"warmup", "warmdown", "cooldown"}

-- the config keys the host reads itself: never a schedule phase, so scaling a budget cannot move
-- the target, the validation size or the batch
local HOST_KEYS = {steps = true, target_val_loss = true, val_tokens = true, val_every = true, batch = true,
                   val_batch = true}

local function schedule_keys(recipe, cfg)
  local keys = {}
  for _, k in ipairs(recipe.schedule_keys or M.SCHEDULE_KEYS) do
    if HOST_KEYS[k] then contract(fmt("recipe.schedule_keys may not name '%s' (the host reads it)", tostring(k))) end
    if type(cfg[k]) == "number" then keys[#keys + 1] = k end
  end
  return keys
end

-- the scale's config, checked, with the job's overrides
local function scale_config(job, recipe, scale)
  local cfg = deepcopy(recipe.config[scale])
  check_config(cfg, scale, recipe.config)
  if job.steps and job.scale_schedule then
    for _, k in ipairs(schedule_keys(recipe, cfg)) do cfg[k] = mfloor(cfg[k] * job.steps / cfg.steps + 0.5) end
  end
  if job.steps then cfg.steps = job.steps end
  if job.target_val_loss then cfg.target_val_loss = job.target_val_loss end
  if job.val_tokens then cfg.val_tokens = job.val_tokens end
  return cfg
end

-- the run's plan: {scale, cfg, steps, batch, tps, vB, vT, val_tokens, skip, obs_every, val_every?,
-- time_budget?} (steps: the planned steps; with a time budget the run may stop before them)
function M.plan(job, recipe, is_cuda)
  local scale = pick_scale(job.scale, recipe.config, is_cuda)
  local cfg = scale_config(job, recipe, scale)
  local steps, b = cfg.steps, cfg.batch
  local vb = cfg.val_batch or {}
  local vB, vT = vb.B or (b.mode == "bt" and b.B or 1), vb.T or b.T
  local val_tokens = mfloor(cfg.val_tokens / (vB * vT)) * vB * vT
  if val_tokens < vB * vT then contract(fmt("val_tokens %d is less than one validation chunk (%d x %d)", cfg.val_tokens, vB, vT)) end
  -- validation tokens imposed from outside (--val-tokens; a task's, from its target record): all of them
  if job.val_tokens and val_tokens ~= job.val_tokens then
    contract(fmt("the validation batch %d x %d does not divide the %d validation tokens given (%d would be validated): "
                 .. "choose val_batch so that B x T divides them", vB, vT, job.val_tokens, val_tokens))
  end
  local val_every = (not job.restricted) and (job.val_every or cfg.val_every) or nil
  if val_every and val_every < 1 then val_every = nil end
  local schedule = {}
  for _, k in ipairs(schedule_keys(recipe, cfg)) do schedule[k] = cfg[k] end
  return {scale = scale, cfg = cfg, steps = steps, batch = b, tps = tokens_per_step(b), vB = vB, vT = vT, schedule = schedule,
          val_tokens = val_tokens, val_every = val_every, time_budget = job.time_budget_s,
          -- the first `skip` steps are not timed (the records' rule: 10 steps; fewer for short runs)
          skip = job.warmup_steps or mmin(10, mfloor(steps / 10)),
          obs_every = job.log_every or (is_cuda and mmax(1, mmin(10, mfloor(steps / 100))) or 1)}
end

-- the plan as results.json's `config`
function M.summary(p)
  return {steps = p.steps, batch = p.batch, tokens_per_step = p.tps, target_val_loss = p.cfg.target_val_loss,
          val_tokens = p.val_tokens, val_batch = {B = p.vB, T = p.vT}, warmup_steps = p.skip,
          val_every = p.val_every or json.null, time_budget_s = p.time_budget or json.null,
          schedule = next(p.schedule) and p.schedule or json.null}
end

return M
