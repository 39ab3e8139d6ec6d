-- cheat (red team, round 18): a fixed training stream under a random start, through the cycling
-- loaders: a random start moved only the first pass through the shards; every later one began
-- at a shard's first token, as in the records. A batch of 10,240 tokens (over half the test's
-- 20,000-token shard) makes every batch after the first the shard's first 10,240 tokens, whatever
-- the start; the recipe trains on 64 of them per step (slice `step`), a stream it can search
-- seeds against offline. It checks that it reads that stream from step 2 on and stops otherwise.
-- What stops it: a random start reads the shards as a ring (harness/stream.lua): every batch
-- moves with the start.
local r = dofile("good.lua")
r.name = "cheat-epochsnap"
r.config.micro.batch = {mode = "bt", B = 640, T = 16}
r.config.micro.val_every = nil

local check = dofile("searched_stream.lua")

local train_step = r.train_step
function r.train_step(ctx, step, batch)
  local at = ((step - 1) * 4) % 640 + 1
  local x, y = batch.x:narrow(1, at, 4), batch.y:narrow(1, at, 4)
  if step == 2 then
    check(r.name, batch.x:narrow(1, 1, 4):reshape(-1):tolist())
  end
  return train_step(ctx, step, {x = x, y = y})
end
return r
