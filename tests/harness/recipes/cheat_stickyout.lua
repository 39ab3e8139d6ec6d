-- cheat (red team, round 13): weights trained before the run, found in the run's own scratch
-- folder. guard.fresh_dir was remove_tree + mkdir: a removal that failed was ignored and mkdir
-- accepted the folder, so a scratch folder the agent pre-created at the score's output path
-- (predictable to the second by default, or any --out) and made impossible to empty (chattr +i;
-- chmod 555 for a non-root scorer) kept its files, and a recipe may read its output folder: setup
-- loaded w.bin and the timed steps only fine-tuned (CPU micro: FSR 1.66 against an honest 0.00).
-- Closed: a run's folder that cannot be emptied stops the run before it starts
-- (tests/harness/test_cheats_parent.lua).
local sr = require "speedrun"
local r = dofile("good.lua")
r.name = "cheat-stickyout"
r.config.micro.steps = 4
r.config.micro.val_every = nil
local setup = r.setup
function r.setup(ctx)
  setup(ctx)
  local f = io.open(ctx.out_dir .. "/w.bin", "rb")
  print("[cheat] planted weights in ctx.out_dir:", f ~= nil)
  if not f then return end
  local bin = f:read("a")
  f:close()
  local off = 1
  sr.no_grad(function()
    for _, p in ipairs(ctx.model:parameters()) do
      local nb = 4 * p:numel()
      if #bin < off + nb - 1 then return end
      p:copy_(sr.frombytes(bin:sub(off, off + nb - 1), "float32", p.shape) + sr.randn(table.unpack(p.shape)) * 1e-3)
      off = off + nb
    end
  end)
end
return r
