-- cheat: out of the sandbox through package.path. The child runs with its working directory in
-- the workspace, and Lua's default package.path (kept after the checkout's lua/ folders) ends with
-- "./?.lua;./?/init.lua". The sandbox's require hands any "speedrun.*" name to the real require,
-- which finds the workspace's own speedrun/cheat_clock.lua (a .lua file: a source file the guard
-- accepts) and runs it with the process's real globals: debug, package, the loaded harness modules.
-- That module (tests/harness/recipes/cheat_pathescape_mod.lua, copied to
-- WORKSPACE/speedrun/cheat_clock.lua) rewrites the clock the training loop captured
-- (speedrun.harness.steps' upvalue `now`) to run at a quarter of the real rate. The recipe then
-- trains honestly (good.lua) and is scored at 1/4 of its time.
local r = dofile("good.lua")
r.name = "cheat-pathescape"
local patched = require "speedrun.cheat_clock"   -- WORKSPACE/speedrun/cheat_clock.lua
local setup = r.setup
function r.setup(ctx)
  print("[cheat] clock patched: " .. tostring(patched))
  setup(ctx)
end
return r
