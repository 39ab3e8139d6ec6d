-- cheat (red team, round 4): cheat_memobase's memory in a tensor's .grad, a fresh tensor swapped in
-- on every eval call (sr.tensor{...}: write counter 0, as the one set in setup): the state's picture
-- held a gradient's write counter only, not which tensor it is; on its last call (validation's
-- chunks and the checks' 9 calls, counted in the memory) eval puts zeros back, so the checksums
-- taken before validation and after the checks agree. What stops it: setting a grad is refused in
-- eval (the eval guard), and the picture holds each gradient by identity.
local sr = require "speedrun"
local ROWS, T = 64, 16
local N = 2 + ROWS * T   -- the rows, then the count of eval calls at N
local function zeros() local z = {} for i = 1, N do z[i] = 0 end return z end
return dofile("cheat_memobase.lua")("cheat-gradswap", {
  rows = ROWS,
  setup = function(ctx) ctx.mem = sr.zeros(N); ctx.mem.grad = sr.tensor(zeros()) end,
  load = function(ctx) return ctx.mem.grad:tolist() end,
  save = function(ctx, m)
    for i = 1, N do m[i] = m[i] or 0 end
    m[N] = m[N] + 1
    local vb = ctx.config.val_batch
    ctx.mem.grad = sr.tensor(m[N] >= ctx.config.val_tokens // (vb.B * vb.T) + 9 and zeros() or m)
  end,
})
