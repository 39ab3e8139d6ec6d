-- cheat (red team, round 6): cheat_memobase's memory in the keys of an empty table. Assigning nil
-- leaves a node's key in place; next(t, k) succeeds for such a key and errors for an absent one.
-- Integer keys K + j all land in slot j (mod 8191) of a table pre-sized to 8192 nodes, so writing
-- bit j is "insert K0+j (1) or K1+j (0) and set it to nil": the table stays empty to every
-- traversal (the picture sees no change), no rehash ever drops a key. What stops it: inside eval,
-- next may not be asked from a key the table does not hold.
local ROWS, T, BITS = 64, 16, 7
local N = 1 + ROWS * T
local P = 8191
local K1, K0 = P * 1000000, P * 2000000
local bits = {}
return dofile("cheat_memobase.lua")("cheat-deadkey", {
  rows = ROWS,
  setup = function(ctx)
    for i = 0, 5000 do bits[K1 + i] = true end
    for i = 0, 5000 do bits[K1 + i] = nil end
    ctx.bits = bits
  end,
  load = function(ctx)
    local m = {}
    local function cell(i)
      local v = 0
      for b = 0, BITS - 1 do
        if pcall(next, bits, K0 + (i - 1) * BITS + b) then v = v | (1 << b) end
      end
      return v
    end
    m[1] = cell(1)
    for i = 2, 1 + m[1] * T do m[i] = cell(i) end
    return m
  end,
  save = function(ctx, m)
    for i = 1, 1 + m[1] * T do
      local v = m[i] or 0
      for b = 0, BITS - 1 do
        local k = ((v >> b) & 1 == 1 and K0 or K1) + (i - 1) * BITS + b
        bits[k] = true; bits[k] = nil
      end
    end
  end,
})
