-- Where a run's training stream starts (harness/stream.lua): a draw's start (anywhere: the loader
-- reads a ring from it), the policy that K runs' results and a task's two references give, and the
-- draw itself. The runs end to end: test_harness (calibrate and score), test_data_lua (the loader).
local T = require "speedrun.testing"
local stream = require "speedrun.harness.stream"

T.case("a draw's start: anywhere, whatever the mode, the steps and the batch (the loader's ring)", function()
  local bt = {mode = "bt", total_tokens = 1000, step_tokens = 100}
  T.eq(stream.start(nil, bt), 0, "no draw: the first token")
  T.eq(stream.start(0, bt), 0)
  T.eq(stream.start(0.5, bt), 500)
  T.eq(stream.start(0.999999, bt), 999)
  -- round 18 (cheat_globalspan): a global stream's start was drawn early enough for the planned
  -- steps, and a batch reading the shards once over the run left no room: the first token always
  local g = {mode = "global", total_tokens = 1000, step_tokens = 100}
  T.eq(stream.start(0.7, g), 700, "a global stream is a ring too: no room is needed")
  T.eq(stream.start(0.999999, g), 999)
  T.eq(math.type(stream.start(0.123, bt)), "integer")
end)

T.case("the policy of runs, of an entry, of a task's references", function()
  local function run(p) return {config = {stream = p and {policy = p, start = 3} or nil}} end
  T.eq(stream.of_runs {run "random", run "random"}, "random")
  T.eq(stream.of_runs {run "random", run "fixed"}, "fixed", "random only when every run drew")
  T.eq(stream.of_runs {run "random", run(nil)}, "fixed", "a run that recorded none read from the start")
  T.eq(stream.of_entry {stream = "random"}, "random")
  T.eq(stream.of_entry {mean_ms = 1}, "fixed", "entries older than the policy")
  T.eq(stream.for_task({}, {stream = "random"}, {stream = "random"}, "c.json"), "random")
  T.eq(stream.for_task({}, {}, {}, "c.json"), "fixed")
  local none, why = stream.for_task({}, {stream = "random"}, {}, "c.json")
  T.eq(none, nil); T.ok(why:find("c.json were calibrated with different training streams (random, fixed)", 1, true), why)
  none, why = stream.for_task({stream = "random"}, {}, {}, "c.json")
  T.eq(none, nil); T.ok(why:find("--stream random: the references in c.json were calibrated with a fixed stream", 1, true), why)
  T.eq(stream.for_task({stream = "fixed"}, {}, {}, "c.json"), "fixed", "--stream saying the same")
end)

T.case("draws: in [0, 1), each its own", function()
  local seen = {}
  for _ = 1, 64 do
    local u = assert(stream.draw())
    T.ok(u >= 0 and u < 1, tostring(u))
    T.ok(not seen[u], "a repeated draw: " .. u)
    seen[u] = true
  end
end)

T.done()
