-- speedrun.harness.stream: where a run's training stream starts. `fixed`: at the first token of
-- the training shards, as the records do (`speedrun train`'s default). `random`: at a place the
-- parent draws from /dev/urandom for each run and hands the child in its job, never to the
-- recipe (docs/harness.md, "The stream's start"). With a fixed stream every run reads the same
-- tokens, so a recipe could search seeds offline and map ctx.seed onto the luckiest (round 17);
-- with a random start there is nothing to search. Scores follow their calibration's policy, and
-- `calibrate` (with --tune-steps too) draws by default.
local M = {}
local fmt = string.format

M.DEFAULT_CALIBRATE = "random"   -- and score without --task (options.lua checks --stream)

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

-- the start (a token of the shards' concatenation) of a draw u in [0, 1) for a loader's info()
-- and the planned steps: anywhere in a cycling stream (bt, seq); in a global one, which ends with
-- its last shard, early enough for the planned steps plus one step lost at each shard's end
function M.start(u, info, steps)
  if not u then return 0 end
  local span = info.total_tokens
  if info.mode == "global" then
    span = info.total_tokens - (steps + 1 + (info.shards or 1)) * info.step_tokens
  end
  if span <= 1 then return 0 end
  return math.min(span - 1, math.floor(u * span))
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
