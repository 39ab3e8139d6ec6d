-- good.lua whose eval looks at what the process has mapped (an unrestricted run may read /proc):
-- no validation shard may be mapped while eval answers (round 19: native agent code on a GPU that
-- reads host memory through HMM or ATS would read every later validation token from a mapping),
-- and the training shard is (the probe's control: it sees mappings where there are some).
local r = dofile("good.lua")
local eval = r.eval
function r.eval(ctx, x)
  local f = assert(io.open("/proc/self/maps", "r"))
  local maps = f:read("a")
  f:close()
  if maps:find("syn_val_", 1, true) then error("a validation shard is mapped while eval answers") end
  if not maps:find("syn_train_", 1, true) then error("the probe sees no training shard mapped either") end
  return eval(ctx, x)
end
return r
