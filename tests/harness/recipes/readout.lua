local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  local f = io.open("/etc/hostname", "r")
  setup(ctx)
end
return r
