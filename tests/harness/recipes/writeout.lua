local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  local f = assert(io.open(ctx.out_dir .. "/note.txt", "w"))   -- allowed: the run's own folder
  f:write("ok\n")
  f:close()
  setup(ctx)
end
return r
