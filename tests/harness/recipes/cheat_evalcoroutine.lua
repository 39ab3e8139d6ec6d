-- cheat: as cheat_evalhidden.lua (training inside eval, hand-written gradient steps on a
-- bigram table that does not require grad), with the state hidden in a coroutine's locals instead
-- of a library table: the state digest walks tables and functions' upvalues but not threads
-- (coroutine.wrap's function holds its thread as an upvalue; the thread's stack is not walked).
local sr = require "speedrun"
local F = sr.F
local r = dofile("good.lua")
r.name = "cheat-evalbigram-co"
local V = 32
local box   -- coroutine.wrap: box("add", x, y) stores a batch, box("W") trains once and returns W
function r.setup(ctx)
  local lr = 1.0 + 0.01 * ctx.seed
  box = coroutine.wrap(function(cmd, a, b)
    local batches, W, trained = {}, sr.zeros({V, V}), false
    local I = F.cast(F.eq(sr.arange(V):view(V, 1), sr.arange(V):view(1, V)), "float32")   -- the identity
    while true do
      if cmd == "add" then
        batches[#batches + 1] = {a:clone(), b:clone()}
        cmd, a, b = coroutine.yield()
      else
        if not trained then
          for _ = 1, 2 do
            for _, bt in ipairs(batches) do
              local x, y = bt[1]:reshape(-1), bt[2]:reshape(-1)
              local g = F.sub(F.softmax(F.embedding(x, W), -1), F.embedding(y, I))
              W:add_(F.mul(F.matmul(F.embedding(x, I):transpose(), g), -lr / x:size(1)))
            end
          end
          trained = true
        end
        cmd, a, b = coroutine.yield(W)
      end
    end
  end)
end
function r.train_step(ctx, step, batch) box("add", batch.x, batch.y) end
function r.eval(ctx, x) return F.embedding(x, box("W")) end
return r
