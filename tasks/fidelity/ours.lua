-- tasks/fidelity/ours.lua: the speedrun side of the fidelity comparison (README.md here).
--   speedrun run tasks/fidelity/ours.lua init  RECIPE OUT.srw [--scale full] [--seed 1] [--device cuda]
--       builds the recipe's model (setup) and saves its initial weights (PyTorch names)
--   speedrun run tasks/fidelity/ours.lua train RECIPE --weights IN.srw --batches TORCH.json
--       --train-files GLOB --out OURS.json [--scale full] [--device cuda] [--graph on|off]
--       loads the weights, then trains on exactly the token windows the PyTorch run consumed
--       (TORCH.json: micro_batch, T, accum, steps, positions = {{shard, pos}, ...} one per micro-batch)
--       and writes the per-step training loss (mean over the step's micro-batches), tokens/s and
--       the start-up: seconds from the process's start to the end of step 1 (first_step_s; loading
--       the weights and the batch list included).
--       In the recipe's batch mode: bt (records 1-11) gets x, y [accum*B, T] with micro_batch = B;
--       seq (records 12-21) gets the flat [accum*T] concatenation of the windows with
--       micro_batch = T tokens, so the recipe's own split gives back the script's micro-batches.
-- The schedule uses the scale's full step count, so the first steps follow the record's schedule.
-- The steps run as the harness runs them (speedrun.harness.graph): on cuda, eager until the step
-- repeats, then captured with the step compiler's plan, verified against an eager step and
-- replayed; --graph off keeps every step eager. OURS.json's cuda_graph says what happened.
local sr = require "speedrun"
local nn = require "speedrun.nn"
local json = require "speedrun.json"
local data = require "speedrun.data"
local graph = require "speedrun.harness.graph"
local rules = require "speedrun.harness.rules"

local WARMUP = 10   -- steps before tokens/s is timed (steps 11..N, as torch_side.py times them)

-- seconds since this process started (/proc/self/stat's start time against /proc/uptime, as
-- torch_side.py reads them); nil without /proc
local function seconds_since_start()
  local read = require("speedrun.util").read_file
  local stat, uptime = read("/proc/self/stat"), read("/proc/uptime")
  if not stat or not uptime then return nil end
  local up = tonumber(uptime:match("^(%S+)"))
  local fields = {}
  for w in (stat:match("%)%s*(.*)$") or ""):gmatch("%S+") do fields[#fields + 1] = w end
  local p = io.popen("getconf CLK_TCK 2>/dev/null")
  local hz = p and tonumber(p:read("a")) or 100
  if p then p:close() end
  local ticks = tonumber(fields[20])   -- field 22, starttime
  return up and ticks and up - ticks / hz or nil
end

local function die(msg) io.stderr:write("ours.lua: ", msg, "\n") os.exit(2) end

local cmd = arg[1]
local pos, opt = {}, {}
do
  local i = 2
  while arg[i] do
    local a = arg[i]
    if a:sub(1, 2) == "--" then opt[a:sub(3)] = arg[i + 1]; i = i + 2
    else pos[#pos + 1] = a; i = i + 1 end
  end
end

local util = require "speedrun.util"

local function load_recipe(path)
  local recipe, err = util.load_recipe(path)
  return recipe or die(err)
end

local function make_ctx(recipe, scale, device, seed, overrides)
  local ctx, err = util.recipe_context(recipe, scale, device, seed, overrides)
  return ctx or die(err)
end

local device = opt.device or ((pcall(sr.cuda_available) and sr.cuda_available()) and "cuda" or "cpu")
local scale = opt.scale or "full"
local seed = tonumber(opt.seed or 1)

if cmd == "init" then
  local recipe = load_recipe(pos[1] or die("init RECIPE OUT.srw"))
  local ctx = make_ctx(recipe, scale, device, seed)
  local ok, err = nn.save(pos[2] or die("init RECIPE OUT.srw"), ctx.model:state_dict())
  if not ok then die(err) end
  print(("saved %d parameters of %s (%s scale) to %s"):format(#ctx.model:parameters(), recipe.name, scale, pos[2]))
elseif cmd == "train" then
  local recipe = load_recipe(pos[1] or die("train RECIPE ..."))
  local tb = json.decode(assert(io.open(opt.batches or die("--batches TORCH.json"))):read("a"))
  local mb, T, accum, steps = tb.micro_batch, tb.T, tb.accum, tb.steps
  local mode = recipe.config[scale].batch.mode or "bt"
  if mode ~= "bt" and mode ~= "seq" then die("batch mode " .. mode .. " is not supported") end
  if mode == "seq" and mb ~= 1 then die("a seq-mode recipe needs one sequence per micro-batch (micro_batch 1)") end
  local batch = mode == "bt" and {mode = "bt", B = mb * accum, T = T} or {mode = "seq", B = 1, T = accum * T}
  local ctx = make_ctx(recipe, scale, device, seed, {batch = batch, micro_batch = mode == "bt" and mb or T})
  local sd = assert(nn.load(opt.weights or die("--weights IN.srw"), {device = device}))
  ctx.model:load_state_dict(sd)
  -- the shards, in sorted order (the PyTorch loaders use sorted(glob(...)))
  local files = {}
  local p = io.popen("ls -1 " .. (opt["train-files"] or die("--train-files GLOB")) .. " | sort")
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  local shards = {}
  local function window(k)
    local sh, at = tb.positions[k][1], tb.positions[k][2]
    shards[sh] = shards[sh] or assert(data.open_shard(files[sh + 1]))
    return shards[sh]:tensor(at + 1, mb * T + 1)
  end
  if opt.graph and opt.graph ~= "on" and opt.graph ~= "off" then die("--graph must be on or off") end
  -- the harness's stepper; its verification step evaluates the model as the harness does
  local checker = rules.new(ctx, recipe.eval, nil, {checks = {}}, device, false)
  local stepper, G = graph.new {ctx = ctx, recipe = recipe, rules = checker, device = device,
                                cuda_graph = opt.graph or "on", skip = WARMUP}
  local losses, t_from, t_to, first_step_s = {}, nil, nil, nil
  for step = 1, steps do
    local xs, ys = {}, {}
    for j = 1, accum do
      local w = window((step - 1) * accum + j)
      local shape = mode == "bt" and {mb, T} or {mb * T}
      xs[j] = w:narrow(1, 1, mb * T):view(table.unpack(shape))
      ys[j] = w:narrow(1, 2, mb * T):view(table.unpack(shape))
    end
    local x = sr.F.cat(xs, 1):to(device)
    local y = sr.F.cat(ys, 1):to(device)
    if step == WARMUP + 1 then sr.synchronize(); t_from = sr.clock() end
    local loss = stepper:run(step, x, y)
    if step == 1 then sr.synchronize(); first_step_s = seconds_since_start() end
    losses[step] = sr.is_tensor(loss) and loss:item() or loss
    if step == steps then sr.synchronize(); t_to = sr.clock() end
    io.stderr:write(("step %d/%d loss %.4f\n"):format(step, steps, losses[step]))
  end
  stepper:free()
  local how = G.used and ("replayed as a CUDA graph from step " .. G.captured_at + 2 .. ", " ..
    (G.fuse.used and G.fuse.groups_fused .. " fused groups" or "unfused")) or ("eager: " .. tostring(G.reason))
  io.stderr:write("speedrun steps: ", how, "\n")
  local tps = (t_from and t_to and steps > WARMUP) and (steps - WARMUP) * mb * accum * T / (t_to - t_from) or json.null
  local f = assert(io.open(opt.out or die("--out OURS.json"), "w"))
  f:write(json.encode({side = "speedrun", recipe = recipe.name, scale = scale, device = device, steps = steps,
                       micro_batch = mb, accum = accum, T = T, losses = json.array(losses), tokens_per_s = tps,
                       first_step_s = first_step_s or json.null,
                       cuda_graph = G,
                       peak_memory_bytes = device == "cuda" and sr.cuda.memory().peak or json.null}, true), "\n")
  f:close()
else
  die("usage: ours.lua init RECIPE OUT.srw | train RECIPE --weights W --batches TORCH.json --train-files GLOB --out OURS.json")
end
