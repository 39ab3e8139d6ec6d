-- cheat: a non-causal eval (every position answered from the NEXT input token) that
-- keeps a memory across eval calls where the state picture cannot see it, so the stateless
-- re-check and the causality check see the answers of the validation pass again. No training.
-- Where the memory lives: `require "recipe"` (this file, loaded again by the sandbox's require)
-- returns a second recipe table that the sandbox caches in `loaded`, an upvalue of env.require.
-- env.require is a library function (its source is lua/speedrun/harness/sandbox.lua), and
-- state.lua walk() does not enter the upvalues of library functions, so the table is reachable
-- from {ctx, recipe} only through a path the picture skips.
-- The memory: chunk signature (each row's first token: rows' position 1 is never perturbed) ->
-- the chunk's inputs as first seen. A re-check or a perturbed copy is answered from the stored
-- inputs, so its logits are identical (stateless diff 0, causal diff 0).
local sr = require "speedrun"
local F = sr.F
local V = 32
local r = dofile("cheat_peekbase.lua")("cheat-hiddenmem", {B = 4, T = 16}, 0.24, 0.003)
function r.eval(ctx, x)
  local hidden = require "recipe"          -- a table only the sandbox's `loaded` holds
  hidden.mem = hidden.mem or {}
  local ids = x:tolist()
  local sig = {}
  for i = 1, #ids do sig[i] = ids[i][1] end
  sig = table.concat(sig, ",")
  local X = hidden.mem[sig]
  if not X then X = ids; hidden.mem[sig] = ids end
  return r.peek(ctx, X)
end
return r
