-- speedrun.harness.calibfile: the calibration file (`speedrun calibrate` writes it, `score` reads
-- it): where it is, reading it (junk is an error, never an empty file to overwrite), and storing
-- an entry or a tune search's probe into it.
-- {schema, entries = {[card] = {[scale] = {[reference] = entry}}}, searches = (tune searches not
-- finished: harness/tune.lua)}
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local tune = require "speedrun.harness.tune"
local util = require "speedrun.util"
local output = require "speedrun.harness.output"

local M = {}
local fmt = string.format
M.SCHEMA = "speedrun.calibration/1"

-- --calibration, else $SPEEDRUN_CALIBRATION, else the checkout's calibration.json
function M.path(o)
  return o.calibration or os.getenv("SPEEDRUN_CALIBRATION") or (H.source_dir() .. "/calibration.json")
end

-- the file's table (a new one when there is no file); nil and why when the file is there but not
-- a calibration file (never treated as empty: the next write would lose it)
function M.load(path)
  local s = util.read_file(path)
  if not s then
    if H.realpath(path) then return nil, fmt("the calibration file %s cannot be read", path) end
    return {schema = M.SCHEMA, entries = {}}
  end
  local c, jerr = json.decode(s)
  if type(c) ~= "table" or #c > 0 or (c.entries ~= nil and type(c.entries) ~= "table")
     or (c.searches ~= nil and type(c.searches) ~= "table") then
    return nil, fmt("the calibration file %s is not one (%s); fix or move it, nothing was written to it", path,
      jerr or "not an object with an `entries` object")
  end
  c.entries = c.entries or {}
  return c
end

-- M.load inside a command that already read the file once: an error if it became junk since
local function reload(path)
  local c, err = M.load(path)
  if not c then error(err, 0) end
  return c
end

local function write(path, calib) output.write_file(path, json.encode(calib, true) .. "\n") end

-- an entry into the file (raises when the file became junk); a re-timed budget keeps how it was
-- tuned; a tuned one ends its search record
function M.store(path, card, scale, name, entry)
  local calib = reload(path)
  calib.schema = M.SCHEMA
  calib.entries[card] = calib.entries[card] or {}
  calib.entries[card][scale] = calib.entries[card][scale] or {}
  local old = calib.entries[card][scale][name]
  if not entry.tune and type(old) == "table" and type(old.tune) == "table" and old.tune.steps == entry.steps then
    entry.tune = old.tune  -- re-timed at the tuned budget: how it was found still holds
  end
  calib.entries[card][scale][name] = entry
  if entry.tune then tune.forget(calib, card, scale, name) end
  write(path, calib)
end

-- one finished probe of a search in progress (tune.note), written as it ends: a cut search resumes
function M.note(path, card, scale, name, target, rec, confirm, key)
  local calib = reload(path)
  tune.note(calib, card, scale, name, target, rec, confirm, key)
  write(path, calib)
end

return M
