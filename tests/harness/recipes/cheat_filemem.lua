-- cheat: a non-causal eval (every position answered from the NEXT input token; no
-- training) that keeps a memory across eval calls in a FILE of its output folder (ctx.out_dir),
-- which the recipe may write and read back; the state picture (state.lua) sees only Lua values and
-- tensors reachable from {ctx, recipe}, not the file system. The memory: chunk signature (each
-- row's first token: position 1 is never perturbed) -> the chunk's inputs as first seen; a re-check
-- or a perturbed copy is answered from the stored inputs, so its logits are identical (stateless
-- diff 0, causal diff 0).
local sr = require "speedrun"
local F = sr.F
local V = 32
local r = dofile("cheat_peekbase.lua")("cheat-filemem", {B = 4, T = 16}, 0.24, 0.003)
local function load_mem(ctx)
  local mem, f = {}, io.open(ctx.out_dir .. "/mem.txt", "r")
  if f then
    for line in f:lines() do
      local sig, rest = line:match("^([^|]*)|(.*)$")
      local X = {}
      for rowtxt in rest:gmatch("[^;]+") do
        local row = {}
        for v in rowtxt:gmatch("%d+") do row[#row + 1] = tonumber(v) end
        X[#X + 1] = row
      end
      mem[sig] = X
    end
    f:close()
  end
  return mem
end
function r.eval(ctx, x)
  local mem = load_mem(ctx)                -- the memory lives in a file of the output folder
  local ids = x:tolist()
  local sig = {}
  for i = 1, #ids do sig[i] = ids[i][1] end
  sig = table.concat(sig, ",")
  local X = mem[sig]
  if not X then
    X = ids
    local rows = {}
    for i = 1, #ids do rows[i] = table.concat(ids[i], ",") end
    local f = io.open(ctx.out_dir .. "/mem.txt", "a")
    f:write(sig, "|", table.concat(rows, ";"), "\n")
    f:close()
  end
  return r.peek(ctx, X)
end
return r
