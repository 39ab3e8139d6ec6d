-- cheat: a non-causal eval (every position answered from the NEXT input token; no
-- training) that keeps a memory across eval calls in a FILE of its output folder (ctx.out_dir),
-- which the recipe may write and read back; the state picture (state.lua) sees only Lua values and
-- tensors reachable from {ctx, recipe}, not the file system. The memory: chunk signature (each
-- row's first token: position 1 is never perturbed) -> the chunk's inputs as first seen; a re-check
-- or a perturbed copy is answered from the stored inputs, so its logits are identical (stateless
-- diff 0, causal diff 0).
local sr = require "speedrun"
local F = sr.F
local r = {name = "cheat-filemem"}
r.config = {
  micro = {model = {}, batch = {mode = "bt", B = 4, T = 16}, steps = 30, target_val_loss = 3.0,
           val_tokens = 512, val_batch = {B = 4, T = 16}},
}
local V = 32
function r.setup(ctx)
  local q = 0.24 + 0.003 * (ctx.seed % 7)
  local lq, lr = math.log(q), math.log((1 - q) / (V - 1))
  local rows = {}
  for i = 1, V do rows[i] = {}; for j = 1, V do rows[i][j] = (i == j) and lq or lr end end
  ctx.E = sr.tensor(rows, {dtype = "float32", device = ctx.device})
  ctx.W = sr.randn({64, 64}, {device = ctx.device})
end
function r.train_step(ctx, step, batch)
  local w = ctx.W   -- no learning: a few tiny matmuls so the clock is not ~0 (eval-ratio flag)
  for _ = 1, 8 do w = F.matmul(w, ctx.W) end
  return 3.0
end
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
  local B, T = #X, #X[1]
  local nxt = {}
  for i = 1, B do
    nxt[i] = {}
    for t = 1, T do
      nxt[i][t] = (t < T) and X[i][t + 1] or (X[i + 1] and X[i + 1][1] or 0)   -- the next token
    end
  end
  local n = sr.tensor(nxt, {dtype = "int32", device = ctx.device})
  return F.embedding(n, ctx.E)
end
return r
