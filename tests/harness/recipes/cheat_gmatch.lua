-- cheat (red team, round 6): cheat_memobase's memory in the positions of string.gmatch iterators
-- made in setup (a C closure whose position lives in a userdata upvalue: the picture sees the
-- userdata by identity only). A cell's value v is "the next match starts at p with (p-1) % M == v".
-- What stops it: inside eval, only gmatch iterators made during that same call may be called.
local ROWS, T, M = 64, 16, 65
local N = 1 + ROWS * T
local S = string.rep("a", 40000)
return dofile("cheat_memobase.lua")("cheat-gmatch", {
  rows = ROWS,
  setup = function(ctx)
    ctx.its = {}
    for i = 1, N do ctx.its[i] = string.gmatch(S, "()a") end
  end,
  load = function(ctx)
    local m = {}
    for i = 1, N do m[i] = (ctx.its[i]() - 1) % M end
    return m
  end,
  save = function(ctx, m)
    for i = 1, N do
      local it, v = ctx.its[i], m[i] or 0
      -- the next read gives position p+1 where p was the last; advance k so (p+k) % M == v
      -- we don't know p here: peek by reading and compensating
      local p = it()              -- consumed p
      local k = (v - p) % M       -- next read gives p+1+k-1... p+1+k: want (p+1+k-1) % M == v
      for _ = 1, k do it() end
    end
  end,
})
