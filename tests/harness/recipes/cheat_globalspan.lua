-- cheat (red team, round 18): a fixed training stream under a random start. In global mode the
-- start was drawn early enough for the planned steps (the stream ends with its last shard), so a
-- global batch of 640 tokens over 30 steps left no room in the test's 20,000-token shard: every
-- run read from the first token, and a seed searched offline against that stream was lucky in
-- every run (round 17's threat, which the random start was meant to close). Only the first 64
-- tokens of each batch are trained on (the cost of the larger batch is its copy). Here the recipe
-- checks that it reads the stream it "searched" (the shard's first tokens, which an agent knows
-- from its own copy of the corpus) and stops otherwise. What stops it: a random start reads the
-- shards as a ring from anywhere (harness/stream.lua), whatever the steps and the batch.
local r = dofile("good.lua")
r.name = "cheat-globalspan"
r.config.micro.batch = {mode = "global", batch = 640, T = 16}
r.config.micro.val_every = nil

local check = dofile("searched_stream.lua")

local train_step = r.train_step
function r.train_step(ctx, step, batch)
  local x, y = batch.x:narrow(1, 1, 64):view(4, 16), batch.y:narrow(1, 1, 64):view(4, 16)
  if step == 1 then
    check(r.name, batch.x:narrow(1, 1, 64):tolist())
  end
  return train_step(ctx, step, {x = x, y = y})
end
return r
