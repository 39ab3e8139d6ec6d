-- Cheat (issue 14, class 4): a hard link (or a symlink) to a data shard placed in the workspace,
-- read by the recipe: the path is inside the workspace, the file is the validation shard.
local r = dofile("good.lua")
local setup = r.setup
r.name = "cheat-readlink"

function r.setup(ctx)
  setup(ctx)
  local f = io.open(ctx.workspace .. "/val.bin", "rb")
  if f then
    ctx.val_bytes = #f:read("a")   -- a real cheat would train on these tokens
    f:close()
  end
end

return r
