-- cheat (red team, round 5): cheat_memobase's memory in a file of ctx.out_dir opened for writing in
-- setup (allowed: setup is not eval) and written through the handle inside eval (only opening,
-- removing and renaming files were checked, not the methods of a handle). What stops it: inside
-- eval, only handles opened during that same call may be used.
return dofile("cheat_memobase.lua")("cheat-fhandle", {
  setup = function(ctx) ctx.f = assert(io.open(ctx.out_dir .. "/mem.bin", "w+b")) end,
  load = function(ctx)
    ctx.f:seek("set", 0)
    local s = ctx.f:read("a")
    if not s or #s == 0 then return {0} end
    local m = {}
    for v in s:gmatch("[^,]+") do m[#m + 1] = math.tointeger(tonumber(v)) end
    return m
  end,
  save = function(ctx, m)
    ctx.f:seek("set", 0)
    ctx.f:write(table.concat(m, ","))
    ctx.f:flush()
  end,
})
