-- cheat (red team, round 5): cheat_memobase's memory in the positions of read-only handles of the
-- recipe's own source file, opened in setup (allowed), moved by f:seek inside eval (neither a write
-- nor in the picture): 5 numbers of 7 bits a handle. What stops it: inside eval, only handles
-- opened during that same call may be used.
local ROWS = 64
local N = 1 + ROWS * 16
local H = (N + 4) // 5
return dofile("cheat_memobase.lua")("cheat-seekpos", {
  rows = ROWS,
  setup = function(ctx)
    ctx.fs = {}
    for i = 1, H do ctx.fs[i] = assert(io.open("good.lua", "r")) end
  end,
  load = function(ctx)
    local m = {}
    for i = 1, H do
      local p = ctx.fs[i]:seek("cur")
      for j = 0, 4 do m[(i - 1) * 5 + j + 1] = (p >> (7 * j)) & 127 end
    end
    return m
  end,
  save = function(ctx, m)
    for i = 1, H do
      local p = 0
      for j = 0, 4 do p = p | ((m[(i - 1) * 5 + j + 1] or 0) << (7 * j)) end
      ctx.fs[i]:seek("set", p)
    end
  end,
})
