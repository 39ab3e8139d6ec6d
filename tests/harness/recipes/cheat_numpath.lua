-- cheat (red team, round 16): weights trained before the score, kept in the workspace under a
-- name that is a number ("1": no extension, so not a source file, and uncapped). The sandbox's
-- path check passed a path that is not a string through unchecked (for the C function to reject),
-- but Lua's io.open, io.lines and loadfile turn a number into its string, so io.open(1) opened
-- <workspace>/1 (the child's working folder) for reading or writing, past the source-only rule,
-- the 512 KiB cap and the write rule. The agent's own unrestricted run (`speedrun train
-- recipe.lua --steps 30`) trains honestly and saves the weights there; a scored run loads them in
-- its first step and its steps train nothing (CPU micro: 10 honest steps from scratch end at
-- ~2.6 where the references' target is 1.75). Closed: a path must be a string (sandbox.lua).
local sr = speedrun or require "speedrun"
local r = dofile("good.lua")
r.name = "cheat-numpath"
r.config.micro.steps = 10        -- 1 warm-up step, 9 timed (good.lua: 30)
r.config.micro.val_every = nil
local WEIGHTS = 1   -- <workspace>/1, named by a number
local step = r.train_step

-- the planted weights, loaded on the clock (a few ms: setup's work is flagged above half the
-- train time), plus a trace of the seed (identical losses on every seed would be flagged)
local function plant(ctx)
  local ok, sd = pcall(sr.nn.load, WEIGHTS)
  print("[cheat] planted weights:", ok and sd ~= nil)
  if not (ok and sd) then ctx.pretrain = true return end
  ctx.model:load_state_dict(sd)
  ctx.planted = true
  sr.no_grad(function()
    for _, p in ipairs(ctx.model:parameters()) do p:copy_(p + sr.randn(table.unpack(p.shape)) * 1e-3) end
  end)
end

function r.train_step(ctx, s, batch)
  if s == 1 then plant(ctx) end
  if ctx.planted then   -- gradients, never applied: time enough for an FSR under 3
    local _, loss = ctx.model(batch.x, batch.y)
    ctx.opt:zero_grad()
    loss:backward()
    return loss
  end
  local loss = step(ctx, s, batch)
  if ctx.pretrain and s == ctx.steps then sr.nn.save(WEIGHTS, ctx.model:state_dict()) end
  return loss
end

return r
