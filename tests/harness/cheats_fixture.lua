-- What the score-side cheat tests share (tests/harness/test_cheats_parent.lua,
-- test_cheats_sandbox.lua, run from tests/): synthetic shards kept outside every workspace, a
-- workspace of tests/harness/recipes/good.lua plus a recipe, a calibration file for task 1
-- (records 1 and 2) on this machine's CPU card at micro scale, and `speedrun score WS --task 1`
-- as an agent's workspace is scored, with the assertions every cheat needs.
--   local C = dofile("harness/cheats_fixture.lua")("cheats_parent")
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local data = require "speedrun.data"

local exe = arg[-1]
local sh, read, write = T.shell_quote, T.read, T.write

return function(name)
  local C = {sh = sh, read = read, write = write}
  local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/" .. name
  C.tmp = tmp
  os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp .. "/data"))
  assert(data.write_shard(tmp .. "/data/syn_train_000001.bin", T.token_stream(20000, 1)))
  assert(data.write_shard(tmp .. "/data/syn_val_000000.bin", T.token_stream(4000, 2)))
  C.DATA = "--train-files " .. sh(tmp .. "/data/syn_train_*.bin") .. " --val-files " .. sh(tmp .. "/data/syn_val_*.bin")
  C.RUN = " --device cpu --threads 1 " .. C.DATA

  -- runs `speedrun ARGS` (score outputs by default under tmp/runs); returns the exit code and the output
  function C.speedrun(args)
    local _, how, code = os.execute("SPEEDRUN_RUNS_DIR=" .. sh(tmp .. "/runs") .. " " .. sh(exe) .. " " .. args .. " > " .. sh(tmp .. "/out.txt") .. " 2>&1")
    return how == "exit" and code or 128 + code, read(tmp .. "/out.txt")
  end

  -- a fresh workspace: good.lua, and recipe.lua from tests/harness/recipes/RECIPE.lua; files:
  -- {[path in the workspace] = recipe name} copied beside it
  function C.workspace(wname, recipe, files)
    local ws = tmp .. "/ws-" .. wname
    os.execute("rm -rf " .. sh(ws))
    H.mkdir(ws)
    write(ws .. "/good.lua", read("harness/recipes/good.lua"))
    write(ws .. "/recipe.lua", read("harness/recipes/" .. recipe .. ".lua"))
    for path, from in pairs(files or {}) do
      local dir = path:match("^(.*)/[^/]*$")
      if dir then os.execute("mkdir -p " .. sh(ws .. "/" .. dir)) end
      write(ws .. "/" .. path, read("harness/recipes/" .. from .. ".lua"))
    end
    return ws
  end

  -- a calibration file for task 1 (records 1 and 2) on this machine's CPU card at micro scale
  function C.calibration(cname, entries)
    local path = tmp .. "/" .. cname .. ".json"
    write(path, json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {micro = entries}}}, true))
    return path
  end
  C.REC1 = {mean_ms = 1e6, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, val_loss_mean = 1.45, val_loss_std = 0.02}
  C.REC2 = {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, val_loss_mean = 1.45, val_loss_std = 0.02}
  C.CALIB = C.calibration("calib", {record_01 = C.REC1, record_02 = C.REC2})

  -- `speedrun score WS --task 1 ...` (against calib, default C.CALIB); returns rc, output, score.json
  -- (nil when none was written), its path
  function C.score(ws, extra, calib)
    local rc, text = C.speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(calib or C.CALIB) .. C.RUN
                                .. " " .. (extra or ""))
    local path = text:match("score: (%S+/score%.json)")
    local s = path and read(path)
    return rc, text, s and json.decode(s), path
  end

  -- the cheat did not pass: exit 1, verdict not pass, and some run failed with kind (and message pattern)
  function C.refused(ws, kind, pattern, extra)
    local rc, text, s = C.score(ws, extra)
    T.ok(s, "score.json written\n" .. text)
    T.ok(s.verdict ~= "pass", "verdict " .. tostring(s.verdict) .. "\n" .. text)
    T.eq(rc, 1, text)
    local hit
    for _, r in ipairs(s.runs) do
      if r.status == kind and (not pattern or tostring(r.failure.message):find(pattern)) then hit = r end
    end
    T.ok(hit, ("a run failed with %s matching %q\n%s"):format(kind, tostring(pattern), text))
    return s, text
  end

  -- the workspace passes: exit 0, verdict pass
  function C.passes(ws, extra)
    local rc, text, s = C.score(ws, extra)
    T.eq(rc, 0, text)
    T.eq(s and s.verdict, "pass", text)
    return s, text
  end

  function C.honest_passes() return C.passes(C.workspace("honest", "good")) end

  -- the workspace is flagged (exit 1) with a flag containing `text`
  function C.flagged(ws, text)
    local rc, out, s = C.score(ws)
    T.eq(rc, 1, out)
    T.eq(s and s.verdict, "flagged", out)
    T.ok(out:find(text, 1, true), out)
    return s, out
  end

  -- a workspace of good.lua whose recipe.lua is `text` (a recipe written inline by the test)
  function C.inline(wname, text)
    local ws = C.workspace(wname, "good")
    write(ws .. "/recipe.lua", text)
    return ws
  end
  return C
end
