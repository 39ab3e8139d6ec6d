-- Cheat (issue 14, class 5): forging the run's files. The recipe rewrites log.txt with a faster
-- train time, empties recipe.log, rewrites job.json, and reads the job file (the data paths);
-- first in ctx.out_dir, else one folder up.
local r = dofile("good.lua")
local eval = r.eval
r.name = "cheat-forge"

local function write(path, s)
  local f = io.open(path, "w")
  if f then f:write(s) f:close() end
end

local function forge(ctx)
  local d = ctx.out_dir
  local j = io.open(d .. "/job.json") or io.open(d .. "/../job.json")
  if j then ctx.job = j:read("a") j:close() end
  local up = io.open(d .. "/log.txt") and d or d .. "/.."
  write(up .. "/log.txt", "step:30/30 val_loss:0.0001 train_time:1ms step_avg:0.01ms FORGED\n")
  write(up .. "/job.json", '{"FORGED": true}\n')
  os.remove(up .. "/recipe.log")
end

function r.eval(ctx, x)
  if not ctx.forged then
    ctx.forged = true
    pcall(forge, ctx)
  end
  return eval(ctx, x)
end

return r
