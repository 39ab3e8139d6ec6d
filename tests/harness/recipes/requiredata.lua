local r = dofile("good.lua")
function r.setup(ctx)
  local data = require "speedrun.data"
end
return r
