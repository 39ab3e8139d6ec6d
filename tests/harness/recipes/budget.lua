-- good.lua with steps of a known length (a 50 ms busy wait each) and many of them: a time budget,
-- not the step count, ends its run. setup prints ctx.time_budget_s to recipe.log.
local r = dofile("good.lua")
r.name = "test-budget"
r.config.micro.steps = 1000
r.config.micro.val_every = nil
local setup, inner = r.setup, r.train_step
function r.setup(ctx)
  print("time_budget_s " .. tostring(ctx.time_budget_s))
  return setup(ctx)
end
function r.train_step(ctx, step, batch)
  local t = os.clock()
  while os.clock() - t < 0.05 do end
  return inner(ctx, step, batch)
end
return r
