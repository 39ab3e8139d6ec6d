-- cheat (red team, round 5): cheat_memobase's memory in where suspended coroutines stand: 1,025
-- coroutines of one generated function with 256 yield points (the same locals at each), each
-- holding a number as the point it yields at; the picture records a coroutine's functions and
-- locals, not where it stands. What stops it: inside eval, only coroutines made during that same
-- call may be resumed or closed.
local K, ROWS = 256, 64
local N = 1 + ROWS * 16
local cmd = {}
local src = {"local cmd = ...\nreturn function()\nwhile true do\nlocal q = cmd.q or cmd.old\n"}
for i = 0, K - 1 do
  src[#src + 1] = (i == 0 and "if" or "elseif") .. " q == " .. i .. " then q = nil; coroutine.yield(); cmd.old = " .. i .. "\n"
end
src[#src + 1] = "else q = nil; coroutine.yield(); cmd.old = 0 end\nend\nend\n"
local body = load(table.concat(src))(cmd)
return dofile("cheat_memobase.lua")("cheat-copc", {
  rows = ROWS,
  setup = function(ctx)
    ctx.cos, ctx.cmd = {}, cmd
    for i = 1, N do
      local co = coroutine.create(body)
      cmd.q = 0; coroutine.resume(co); cmd.q = nil
      ctx.cos[i] = co
    end
  end,
  load = function(ctx)
    local m = {}
    for i = 1, N do coroutine.resume(ctx.cos[i]); m[i] = cmd.old end
    cmd.old = nil
    return m
  end,
  save = function(ctx, m)
    for i = 1, N do cmd.q = m[i] or 0; coroutine.resume(ctx.cos[i]) end
    cmd.q, cmd.old = nil, nil
  end,
})
