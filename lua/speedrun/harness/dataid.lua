-- speedrun.harness.dataid: the identity of the data a run reads, so that a score is only ever
-- compared with references measured on the same data. The target validation loss is measured on
-- the validation shards and the step budgets were tuned on the training shards: an FSR against
-- references calibrated on another corpus (or another preparation of it) would be meaningless.
-- The id is 16 hex digits of a SHA-256 over the validation files' contents (the target is measured
-- on them), the training files' names, sizes and contents' SHA-256 (read in pieces), and, for a
-- prepared corpus, its manifest's fingerprint. Results carry it (`data`),
-- calibration entries too, and `score` refuses references measured on other data. A run's child
-- reads the list M.resolve gives (cli.run_one), the one its id hashes. The training
-- contents count since round 13 of the red team: an unrestricted run rewrote a training shard in
-- place, same size, with trained weights as token pairs for the scored run to read back
-- (cheat_trainshard, FSR 1.33); the manifest cannot vouch for them (the agent can rewrite it too).
local H = require "speedrun.harness_core"
local read_all = require("speedrun.util").read_file

local M = {}
local fmt = string.format

-- the files a shard pattern names ("dir/*val_*.bin": one directory, * and ? in the last part),
-- sorted, as the loader's glob(3) finds them (a leading dot matched only by a leading dot); nil,
-- why when the directory cannot be read
function M.glob(pattern)
  local dir, base = pattern:match("^(.*)/([^/]*)$")
  if not dir then dir, base = ".", pattern end
  local names, err = H.listdir(dir)
  if not names then return nil, fmt("cannot list %s: %s", dir, tostring(err)) end
  local lp = "^" .. base:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
  local dots = base:sub(1, 1) == "."
  local out = {}
  for _, n in ipairs(names) do
    if n:match(lp) and (dots or n:sub(1, 1) ~= ".") then out[#out + 1] = dir .. "/" .. n end
  end
  table.sort(out)
  return out
end

-- a shard the id may hash: a regular file, not a link (a link resolves per process: the
-- scorer's /proc/self/cwd is not the child's, round 14's cheat_procshard); nil, why
local function plain_file(p)
  local st = H.stat(p, true)
  if not st then return nil, fmt("cannot read %s", p) end
  if st.type ~= "file" then
    return nil, fmt("%s is a %s: data shards must be regular files (a link reads differently in each process)", p,
                    st.type == "link" and "symbolic link" or tostring(st.type))
  end
  return st
end

-- the shards a pattern names, each a regular file, as real paths (no link or relative part left:
-- the list a run's child reads, so that it reads what the id hashed; round 15 swapped the folder a
-- pattern named between the id and the child's own glob); a list is resolved the same way;
-- nil, why
function M.resolve(files)
  local list, err = files, nil
  if type(files) ~= "table" then list, err = M.glob(tostring(files)) end
  if not list then return nil, err end
  local out = {}
  for i, p in ipairs(list) do
    local ok, why = plain_file(p)
    if not ok then return nil, why end
    out[i] = H.realpath(p)
    if not out[i] then return nil, fmt("cannot resolve %s", p) end
  end
  return out
end

-- A training shard's SHA-256, remembered in this process (the scorer's, the calibrator's: an id is
-- computed at a score's start and again for each run, and a FineWeb-sized corpus hashes at ~300 MB/s)
-- by its real path and what stat says of it: identity, size, modification and change times. A write
-- moves the change time, which only root can set back; the memo lives in this process's memory, out
-- of the agent's reach. Not remembered: a file that changed while it was read, or changed less than
-- M.RACY_S before (file times tick coarsely: a second write in the same tick would not move them,
-- git's "racily clean" entries).
local hashed = {}
M.RACY_S = 2

local function stat_key(st)
  return st and fmt("%s %d %s", st.id, st.size, st.changed)
end

-- the shard's size and SHA-256; nil, nil, why
local function shard_sha(p)
  local st = H.stat(p)
  if not st then return nil, nil, fmt("cannot read %s", p) end
  local key, memo = stat_key(st), hashed[p]
  if memo and memo.key == key then return st.size, memo.sha end
  local sha, err = H.sha256_file(p)
  if not sha then return nil, nil, fmt("cannot read %s", tostring(err or p)) end
  local ctime = tonumber(st.changed:match(" (%d+)"))
  if stat_key(H.stat(p)) == key and ctime and os.time() - ctime >= M.RACY_S then hashed[p] = {key = key, sha = sha} end
  return st.size, sha
end

-- the id of resolved lists (M.resolve's: regular files, real paths); nil, why
local function id_of(trains, vals)
  local parts = {}
  for _, p in ipairs(vals) do
    local s, err = read_all(p)
    if not s then return nil, fmt("cannot read %s: %s", p, tostring(err)) end
    parts[#parts + 1] = fmt("val %s %d %s\n", p:match("[^/]*$"), #s, H.sha256(s))
  end
  for _, p in ipairs(trains) do
    local size, sha, err = shard_sha(p)
    if not sha then return nil, err end
    parts[#parts + 1] = fmt("train %s %d %s\n", p:match("[^/]*$"), size, sha)
  end
  local manifest = read_all((vals[1]:match("^(.*)/") or ".") .. "/manifest.json")
  local fp = manifest and manifest:match('"fingerprint"%s*:%s*"(%x+)"')
  if fp then parts[#parts + 1] = "fingerprint " .. fp .. "\n" end
  return H.sha256(table.concat(parts)):sub(1, 16)
end

-- id(train, val) -> 16 hex digits | nil, why (no validation file, unreadable): train and val are
-- shard patterns or lists
function M.id(train_files, val_files)
  local vals, verr = M.resolve(val_files)
  if not vals then return nil, verr end
  if #vals == 0 then return nil, "no validation file matches " .. tostring(val_files) end
  local trains, terr = M.resolve(train_files)
  if not trains then return nil, terr end
  return id_of(trains, vals)
end

-- a run's data, resolved when its child is about to start (after its folders were made), set in
-- the child's job as the lists the id hashes (a pattern the child globbed itself could name other
-- files by then: round 15), with the folders they really lie in denied to the recipe; returns the
-- id, or nil when a pattern resolves to nothing (left for the loader to report)
function M.for_child(job)
  local trains, vals = M.resolve(job.train_files), M.resolve(job.val_files)
  if not (trains and vals and #trains > 0 and #vals > 0) then return nil end
  job.train_files, job.val_files = trains, vals
  local deny = {table.unpack(job.deny or {})}
  for _, p in ipairs {trains[1], vals[1]} do deny[#deny + 1] = p:match("^(.*)/[^/]*$") end
  job.deny = deny
  return id_of(trains, vals)
end

-- why a calibration entry may not be compared with runs on data `id`, or nil: entries measured on
-- other data are refused; entries that do not say (calibrated before ids existed) pass, with a
-- note from M.unrecorded
function M.mismatch(entry, id, name)
  local e = type(entry) == "table" and entry.data
  if type(e) == "string" and type(id) == "string" and e ~= id then
    return fmt("%s was calibrated on other data (data id %s) than this score reads (%s): calibrate it on the "
      .. "same corpus (`--data`)", name, e, id)
  end
end

-- a note when references do not record their data (older calibration files), or nil
function M.unrecorded(entries, names)
  local missing = {}
  for i, e in ipairs(entries) do
    if type(e) == "table" and type(e.data) ~= "string" then missing[#missing + 1] = names[i] end
  end
  if #missing == 0 then return nil end
  return fmt("the calibration of %s does not record its data: nothing shows it was measured on the corpus "
    .. "this score reads (re-calibrate to record it)", table.concat(missing, " and "))
end

return M
