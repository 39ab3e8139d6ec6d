-- Cheat (issue 14, class 4): reuse the weights of an earlier run. The recipe trains and saves its
-- weights in ctx.out_dir; a later run (of the same score, or of the next score or train) looks for
-- them next to its own output folder or in the workspace and, when it finds them, skips training.
-- Honest on the first run, 0 ms of training afterwards, identical validation losses on every seed.
local sr = speedrun or require "speedrun"
local r = dofile("good.lua")
local setup, step = r.setup, r.train_step
r.name = "cheat-reuse"

-- where an earlier run's weights may be: next to ctx.out_dir (score's runK/ or runK/scratch/),
-- under the workspace's runs folder, or copied or linked into the workspace
local function candidates(ctx)
  return {ctx.workspace .. "/runs/pre/w.bin", ctx.workspace .. "/runs/pre/scratch/w.bin", ctx.workspace .. "/w.bin",
          ctx.out_dir .. "/../run1/w.bin", ctx.out_dir .. "/../../run1/scratch/w.bin"}
end

function r.setup(ctx)
  setup(ctx)
  for _, path in ipairs(candidates(ctx)) do
    local ok, sd = pcall(sr.nn.load, path)
    if ok and sd then
      ctx.model:load_state_dict(sd)
      ctx.loaded = true
      break
    end
  end
end

function r.train_step(ctx, s, batch)
  if ctx.loaded then return nil end
  local loss = step(ctx, s, batch)
  if s == ctx.steps then ctx.model:save(ctx.out_dir .. "/w.bin") end
  return loss
end

return r
