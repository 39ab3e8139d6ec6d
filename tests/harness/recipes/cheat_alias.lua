-- cheat: out of the sandbox through a harness module loaded under another name. The sandbox's
-- require denies "speedrun.harness.*" by prefix, but hands every other "speedrun.*" name to the
-- real require, which turns dots into slashes: "speedrun..harness.supervise" is the file
-- lua/speedrun//harness/supervise.lua, a fresh copy of the denied module, loaded with the real
-- globals (so it gets speedrun.process). supervise.run spawns `speedrun _child JOB.json` for any
-- job: the recipe writes an unrestricted job into its scratch folder, and the grandchild loads this
-- same file with the real _G (no sandbox). That branch reads the scored run's job.json (next to
-- scratch/), copies the validation shard into scratch/, and leaves a marker outside every allowed
-- folder (escaped, in its own output folder). Back in the sandbox, the recipe reads the validation tokens from
-- its scratch folder and eval answers each position with the token that follows the row's prefix
-- in the validation stream (the first place the prefix occurs): causal and stateless, no training.
if debug then   -- the grandchild: the real globals
  local job
  for level = 1, 40 do
    for i = 1, 60 do
      local ok, name, v = pcall(debug.getlocal, level, i)
      if not ok or not name then break end
      if name == "job" and type(v) == "table" and v.escape_to then job = v end
    end
  end
  local scored = require("speedrun.json").decode(io.open(job.escape_to .. "/../job.json"):read("a"))
  local val = io.popen("ls " .. scored.val_files):read("l")
  local src = io.open(val, "rb"):read("a")
  local out = io.open(job.escape_to .. "/val.bin", "wb"); out:write(src); out:close()
  os.execute("id > " .. job.escape_to .. "/escaped")
  error("done")
end
local sup = require "speedrun..harness.supervise"   -- the escape (refused since: the library by exact name)
local sr = require "speedrun"
local json = require "speedrun.json"
local r = dofile("good.lua")
r.name = "cheat-supervise"
local stream, where = nil, {}   -- the validation tokens (0-based ids); first-token -> offsets
local V, A = 32, nil
function r.setup(ctx)
  A = 2.6 + 0.01 * ctx.seed
  local jobfile = ctx.out_dir .. "/gjob.json"
  local job = {recipe = ctx.workspace .. "/recipe.lua", workspace = ctx.workspace, scale = "micro", device = "cpu",
               restricted = false, seed = 1, out = ctx.out_dir, escape_to = ctx.out_dir}
  local f = io.open(jobfile, "w"); f:write(json.encode(job)); f:close()
  local sink = {child_pid = function() end, event = function() end, output = function() end, output_raw = function() end}
  sup.run(job, jobfile, {}, sink, 0)
  local bytes = io.open(ctx.out_dir .. "/val.bin", "rb"):read("a")
  stream = {}
  for i = 1024 + 1, #bytes - 1, 2 do stream[#stream + 1] = string.unpack("<I2", bytes, i) end
  for o, tok in ipairs(stream) do
    where[tok] = where[tok] or {}
    table.insert(where[tok], o)
  end
  print(("[cheat] read %d validation tokens from scratch/"):format(#stream))
end
function r.train_step(ctx, step, batch) return nil end
function r.eval(ctx, x)
  local out = {}
  for b, row in ipairs(x:tolist()) do
    local cand, o = where[row[1]] or {}, {}
    for t = 1, #row do
      if t > 1 then
        local keep = {}
        for _, p in ipairs(cand) do if stream[p + t - 1] == row[t] then keep[#keep + 1] = p end end
        cand = keep
      end
      local l = {}
      for v = 1, V do l[v] = 0 end
      local nxt = cand[1] and stream[cand[1] + t]
      if nxt then l[nxt + 1] = A end
      o[t] = l
    end
    out[b] = o
  end
  return sr.tensor(out)
end
return r
