-- Where a run's training stream starts (harness/stream.lua): a draw's start in cycling and
-- global streams, the policy that K runs' results and a task's two references give, and the
-- draw itself. The runs end to end: test_harness (calibrate and score), test_data_lua (the loader).
local T = require "speedrun.testing"
local stream = require "speedrun.harness.stream"

T.case("a draw's start: anywhere in a cycling stream, early enough in a global one", function()
  local bt = {mode = "bt", total_tokens = 1000, step_tokens = 100, shards = 2}
  T.eq(stream.start(nil, bt, 50), 0, "no draw: the first token")
  T.eq(stream.start(0, bt, 50), 0)
  T.eq(stream.start(0.5, bt, 50), 500, "cycling: the planned steps may pass the end")
  T.eq(stream.start(0.999999, bt, 50), 999)
  local g = {mode = "global", total_tokens = 1000, step_tokens = 100, shards = 1}
  -- span = 1000 - (5 steps + 1 + 1 shard) * 100 = 300
  T.eq(stream.start(0.5, g, 5), 150)
  T.eq(stream.start(0.999999, g, 5), 299, "the planned steps and a step lost per shard still fit")
  T.eq(stream.start(0.7, g, 8), 0, "no room: the first token")
  T.eq(math.type(stream.start(0.123, bt, 1)), "integer")
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
