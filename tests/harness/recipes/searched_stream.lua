-- the round-18 cheats' common part (cheat_globalspan, cheat_epochsnap): the stream a seed was
-- "searched" on offline is the test shard's first tokens (T.token_stream(20000, 1)); an agent
-- carries its fingerprint (sum of token * position over the first 64) and checks a batch against
-- it, stopping when the stream is another (a random start that moved it)
local SEARCHED = 23683
return function(name, xs)
  local f = 0
  for i = 1, 64 do f = f + xs[i] * i end
  if f ~= SEARCHED then error("the stream is not the one the seed was searched on", 0) end
  print(name .. ": the stream searched offline")
end
