-- cheat: cheat_memobase's eval (peek, and remember the rows answered) with its memory in a Lua
-- table of numbers the recipe keeps (a closure's upvalue): the state digest counted tensors only.
local memo = {0}
return dofile("cheat_memobase.lua")("cheat-memo-peek", {
  setup = function() end,
  load = function() return memo end,
  save = function() end,
})
