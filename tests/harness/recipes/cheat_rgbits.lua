-- cheat (red team, round 4): cheat_memobase's memory in the requires_grad flags of one-element
-- tensors (6 bits a number): neither the state's picture nor its checksums held the flag. What
-- stops it: changing requires_grad is refused in eval (the eval guard), and the picture holds it.
local sr = require "speedrun"
local ROWS, BITS = 64, 6
local N = 1 + ROWS * 16
return dofile("cheat_memobase.lua")("cheat-rgbits", {
  rows = ROWS,
  setup = function(ctx)
    ctx.bits = {}
    for i = 1, N * BITS do ctx.bits[i] = sr.zeros(1) end
  end,
  load = function(ctx)
    local m = {}
    for i = 1, N do
      local v = 0
      for b = 1, BITS do if ctx.bits[(i - 1) * BITS + b].requires_grad then v = v | (1 << (b - 1)) end end
      m[i] = v
    end
    return m
  end,
  save = function(ctx, m)   -- the bits that change
    for i = 1, N do
      for b = 1, BITS do
        local t, on = ctx.bits[(i - 1) * BITS + b], ((m[i] or 0) >> (b - 1)) & 1 == 1
        if t.requires_grad ~= on then t:requires_grad_(on) end
      end
    end
  end,
})
