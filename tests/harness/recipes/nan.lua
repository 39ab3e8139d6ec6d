local r = dofile("good.lua")
function r.train_step(ctx, step, batch) return 0 / 0 end
return r
