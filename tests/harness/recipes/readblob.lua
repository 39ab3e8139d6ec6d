-- Cheat: weights brought into the workspace under a name that is not a source file, loaded as Lua
-- (loadfile, text mode) or read as bytes: both refused under score, even when the file is missing
local r = dofile("good.lua")
local setup = r.setup
function r.setup(ctx)
  local chunk = loadfile("weights.dat")       -- a Lua table of weights with another extension
  local f = io.open("pretrained.bin", "rb")   -- or raw bytes
  ctx.blob = chunk or f
  setup(ctx)
end
return r
