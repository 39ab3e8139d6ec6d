-- cheat (red team, round 4): cheat_memobase's memory in the payloads of NaNs in a Lua table: the
-- state's picture took any two NaNs as the same value (and 0.0 as -0.0, 1 as 1.0). What stops it:
-- numbers compared bit for bit, and by subtype.
local ROWS = 64
local N = 1 + ROWS * 16
local QNAN = 0x7ff80000
return dofile("cheat_memobase.lua")("cheat-nanpay", {
  rows = ROWS,
  setup = function(ctx)
    ctx.nan = {}
    for i = 1, N do ctx.nan[i] = 0 / 0 end
  end,
  load = function(ctx)
    local m = {}
    for i = 1, N do m[i] = string.unpack("<I4", string.pack("<d", ctx.nan[i])) end
    return m
  end,
  save = function(ctx, m)
    for i = 1, N do ctx.nan[i] = string.unpack("<d", string.pack("<I4I4", m[i] or 0, QNAN)) end
  end,
})
