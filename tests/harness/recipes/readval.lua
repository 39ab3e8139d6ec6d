local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  local f = io.open("data/syn_val_000000.bin", "rb")   -- the data folder inside the workspace
  setup(ctx)
end
return r
