-- speedrun.harness.stream: where a run's training stream starts. `fixed`: at the first token of
-- the training shards, as the records do (`speedrun train`'s default). `random`: at a place the
-- parent draws from /dev/urandom for each run and hands the child in its job, never to the
-- recipe (docs/harness.md, "The stream's start"). With a fixed stream every run reads the same
-- tokens, so a recipe could search seeds offline and map ctx.seed onto the luckiest (round 17);
-- with a random start there is nothing to search: the loader reads the shards as a ring from it, so
-- no batch size or step count pins it (round 18). Scores follow their calibration's policy, and
-- `calibrate` (with --tune-steps too) draws by default.
local M = {}
local fmt = string.format

M.DEFAULT = "random"   -- calibrate's (the tuner's too) and score's without --task (options.lua checks --stream)

-- a uniform draw in [0, 1) from 48 bits of /dev/urandom; nil and why when it cannot be read
function M.draw()
  local f, err = io.open("/dev/urandom", "rb")
  if not f then return nil, "/dev/urandom: " .. tostring(err) end
  local s = f:read(6)
  f:close()
  if not s or #s ~= 6 then return nil, "/dev/urandom: short read" end
  local v = 0
  for i = 1, 6 do v = v * 256 + s:byte(i) end
  return v / 2 ^ 48
end

-- the start (a token of the shards' concatenation) of a draw u in [0, 1) for a loader's info():
-- anywhere, whatever the mode, the steps and the batch, since the loader reads the shards as a
-- ring from it (loader:reset(start), host/data/loader.h). Round 18: a global stream's start was
-- drawn early enough for the planned steps, so a batch that read the shards once over the run
-- left no room (cheat_globalspan: every run from the first token), and a cycling stream's later
-- passes began at a shard's start (cheat_epochsnap: a batch over half the shard, the same from step 2)
function M.start(u, info)
  if not u then return 0 end
  return math.min(info.total_tokens - 1, math.floor(u * info.total_tokens))
end

-- an entry's policy: what its runs recorded (entries older than the policy read from the start)
function M.of_entry(e) return type(e) == "table" and e.stream == "random" and "random" or "fixed" end

-- the policy K runs' results recorded (config.stream): random only when every run's was
function M.of_runs(runs)
  for _, r in ipairs(runs) do
    local st = type(r.config) == "table" and r.config.stream
    if type(st) ~= "table" or st.policy ~= "random" then return "fixed" end
  end
  return "random"
end

-- the policy of a task's score: its two references' (they must agree), or --stream when it says
-- the same; nil and why otherwise
function M.for_task(o, ref_i, ref_next, where)
  local a, b = M.of_entry(ref_i), M.of_entry(ref_next)
  if a ~= b then
    return nil, fmt("the references in %s were calibrated with different training streams (%s, %s): re-calibrate "
      .. "them with one --stream", where, a, b)
  end
  if o.stream and o.stream ~= a then
    return nil, fmt("--stream %s: the references in %s were calibrated with a %s stream, and a score runs as they did",
      tostring(o.stream), where, a)
  end
  return a
end

return M
