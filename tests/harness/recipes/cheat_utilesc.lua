-- cheat (red team, round 5): speedrun.util.load_recipe, the tools' recipe loader (speedrun.util was
-- a module recipes could load), runs a workspace file with the process's own globals (debug, the
-- real require, package); with debug, eval reads the validation targets from the harness's own
-- stack (the chunk's x and y are locals of Rules:validate / recheck / checks) and answers each
-- position from them, matched by prefix, so the checks see a causal, per-row, stateless function.
-- No training. What stops it: speedrun.util is not a module recipes may load, debug is out of the
-- process's globals once the sandbox is installed, and code is loaded as text through the path checks.
local sr = require "speedrun"
local F = sr.F
local dbg = require("speedrun.util").load_recipe("cheat_utilesc_debug.lua")
local V = 32
local r = dofile("good.lua")
r.name = "cheat-utilesc"
function r.setup(ctx) ctx.A = 2.4 + 0.01 * ctx.seed; ctx.W = sr.randn(96, 96) end
function r.train_step(ctx, step, batch)
  local w = ctx.W
  for _ = 1, 4 do w = F.matmul(w, ctx.W) end
  return nil
end
local function harness_xy()
  for level = 2, 40 do
    if not dbg.getinfo(level, "f") then break end
    local x, y
    for i = 1, 60 do
      local name, v = dbg.getlocal(level, i)
      if not name then break end
      if name == "x" and sr.is_tensor(v) then x = v end
      if name == "y" and sr.is_tensor(v) then y = v end
    end
    if x and y then return x:tolist(), y:tolist() end
  end
end
function r.eval(ctx, xin)
  local X, Y = harness_xy()
  local W = F.mul(F.cast(F.eq(sr.arange(V + 1):view(V + 1, 1), sr.arange(V):view(1, V)), "float32"), ctx.A)
  local nxt = {}
  for b, row in ipairs(xin:tolist()) do
    local o = {}
    for t = 1, #row do
      o[t] = V
      for r_ = 1, #X do
        local same = true
        for u = 1, t do if X[r_][u] ~= row[u] then same = false break end end
        if same then o[t] = Y[r_][t]; break end
      end
    end
    nxt[b] = o
  end
  return F.embedding(sr.tensor(nxt, {dtype = "int32"}), W)
end
return r
