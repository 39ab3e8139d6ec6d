-- The ladder of a calibration file (harness/ladder.lua, `speedrun calibrate --show`): reference
-- rows and every task's transition against 3 x the larger std, from hand-made entries whose
-- verdicts are worked out by hand; the command's card and scale choice and its errors.
local T = require "speedrun.testing"
local json = require "speedrun.json"
local ladder = require "speedrun.harness.ladder"

local function entry(steps, mean, std, extra)
  local e = {steps = steps, mean_ms = mean, std_ms = std, runs = 3, completed = 3, target_val_loss = 5.5,
             val_loss_mean = 5.45, val_loss_std = 0.01,
             tune = {steps = steps, target = 5.5, wall_s = 100, cut = {steps = math.floor(0.8 * steps), pass = false, p = 0.99}}}
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local CARD = "Test GPU (1 MiB)"
local calib = {schema = "speedrun.calibration/1", entries = {[CARD] = {proxy = {
  record_01 = entry(1000, 5000, 100),
  record_02 = entry(200, 2000, 50),                       -- 3000 faster, 3σ = 300: holds
  record_03 = entry(90, 1900, 60),                        -- 100 faster, 3σ = 180: does not hold
  record_04 = entry(70, json.null, json.null),            -- not timed
  record_05 = entry(72, 900, 40, {tune = {steps = 60, target = 5.5}}),   -- budget moved since tuning
  record_06 = entry(72, 800, 40, {timed_alone = false}),
}}}}
local tasks = {}
for i = 1, 7 do tasks[i] = {id = i, start = ("tasks/record_%02d"):format(i), target = ("tasks/record_%02d"):format(i + 1)} end

T.case("ladder: transitions against 3 sigma, and why one is not measured", function()
  local L = ladder.build(calib, CARD, "proxy", tasks)
  T.eq(#L.references, 6)
  T.eq(L.references[1].name, "record_01", "by record number")
  T.eq(L.references[5].tuned, false, "a budget other than the tuned one")
  T.eq(L.references[1].cut.pass, false)
  local v = {}
  for _, t in ipairs(L.transitions) do v[t.task] = t end
  T.eq(v[1].verdict, "holds") T.eq(v[1].gap, 3000) T.eq(v[1].sigma3, 300) T.eq(v[1].speedup, 0.6)
  T.eq(v[2].verdict, "does not hold") T.eq(v[2].gap, 100) T.eq(v[2].sigma3, 180)
  T.eq(v[3].verdict, "not measured") T.eq(v[3].why, "record_04 not timed")
  T.eq(v[4].why, "record_04 not timed")
  T.eq(v[5].why, "record_05 not tuned to the target")
  T.eq(v[6].why, "record_06 timed on a shared device")
  T.eq(v[7].why, "record_07 not calibrated", "a reference missing from the file")
  -- at another scale untuned references are timed ladders too (only proxy is tuned)
  local M = ladder.build({entries = {[CARD] = {micro = {record_01 = entry(10, 50, 1, {tune = json.null}),
                                                        record_02 = entry(5, 20, 1, {tune = json.null})}}}}, CARD, "micro", {tasks[1]})
  T.eq(M.transitions[1].verdict, "holds")
  local text = ladder.format(L)
  T.ok(text:find("| 1 | record_01 → record_02 | 3000 | 300 | 60 % | holds |", 1, true), text)
  T.ok(text:find("| record_06 | 72 | yes | - | 57: fails (p 0.99) | 800 ± 40 (3 runs, shared device)", 1, true), text)
  T.ok(text:find("tuning wall time: 500 s for 5 references", 1, true), text)
  T.ok(not text:find("timing wall time", 1, true), "no entry timed by a plain calibrate: no timing line\n" .. text)
  T.ok(text:find("transitions that hold: 1 of 7 (tasks 1)", 1, true), text)
  T.ok(text:find("--scale proxy` accepts against this file (on the data it was measured on): 2 of 7 (1, 2)", 1, true), text)
end)

T.case("ladder: a budget's pass estimate takes the search's spread near it when its own runs came out tighter", function()
  local tune = require "speedrun.harness.tune"
  local e = entry(100, 1000, 10)
  e.tune.target = 5.3
  e.tune.probes = {{steps = 100, val_losses = {5.270, 5.271, 5.272}}, {steps = 95, val_losses = {5.27, 5.29, 5.31}},
                   {steps = 105, val_losses = {5.25, 5.27, 5.29}}}
  e.tune.confirmations = {{steps = 100, val_losses = {5.268, 5.270, 5.272}}}
  local r = ladder.build({entries = {[CARD] = {proxy = {record_01 = e}}}}, CARD, "proxy", {}).references[1]
  local own = tune.power({{values = {5.270, 5.271, 5.272}}, {values = {5.268, 5.270, 5.272}}}, 5.3, 0.01, 3)
  local spread = tune.spread({e.tune.probes, e.tune.confirmations}, 100)
  T.ok(spread > 0.01, tostring(spread))
  T.close(r.pass_prob, tune.pass_probability(5.2705, spread, 5.3, 0.01, 3), 1e-3)
  T.ok(own > 0.99 and r.pass_prob < 0.9, ("own runs %.3f, the search's spread %.3f"):format(own, r.pass_prob))
end)

T.case("ladder: references whose own timed runs would not pass a score are named", function()
  local c = {entries = {[CARD] = {proxy = {record_01 = entry(1000, 5000, 100, {p = 0.001}),
                                           record_02 = entry(200, 2000, 50, {p = 0.094}),
                                           record_03 = entry(90, 1900, 60)}}}}   -- no p recorded: not judged
  local L = ladder.build(c, CARD, "proxy", {tasks[1], tasks[2]})
  T.eq(L.references[1].own_p, nil); T.eq(L.references[2].own_p, 0.094); T.eq(L.references[3].own_p, nil)
  local text = ladder.format(L)
  T.ok(text:find("would not pass a score (their p not below the score's alpha; a budget tuned to pass ~90-100 % of "
    .. "scores misses now and then): record_02 (p 0.094)\n", 1, true), text)
  c.entries[CARD].proxy.record_02.p = 0.002
  T.ok(not ladder.format(ladder.build(c, CARD, "proxy", {tasks[1]})):find("would not pass", 1, true), "none named when all pass")
end)

T.case("ladder: the whole calibration's wall time, the searches' and the plain re-times'", function()
  local c = {entries = {[CARD] = {proxy = {record_01 = entry(1000, 5000, 100, {wall_s = 40}),
                                           record_02 = entry(200, 2000, 50, {wall_s = 20.4}),
                                           record_03 = entry(90, 1900, 60)}}}}   -- timed by its tune only
  local L = ladder.build(c, CARD, "proxy", {tasks[1], tasks[2]})
  T.eq(L.references[1].time_s, 40); T.eq(L.references[3].time_s, nil)
  local text = ladder.format(L)
  T.ok(text:find("tuning wall time: 300 s for 3 references", 1, true), text)
  T.ok(text:find("timing wall time: 60 s for 2 references (the plain calibrate that timed each); the ladder's "
    .. "calibration in all: 360 s (0.10 h)", 1, true), text)
end)

T.case("ladder: references timed under another clock rule than the engine's are named (score gives no FSR)", function()
  local engine = require "speedrun.harness.engine"
  local rule = function(n) return {software = {engine = "aaaa", clock = n}} end
  local c = {entries = {[CARD] = {proxy = {record_01 = entry(1000, 5000, 100, rule(engine.CLOCK)),
                                           record_02 = entry(200, 2000, 50, rule(engine.CLOCK - 1)),
                                           record_03 = entry(90, 1900, 60)}}}}   -- no software: unknown, not named
  local text = ladder.format(ladder.build(c, CARD, "proxy", {tasks[1], tasks[2]}))
  T.ok(text:find(("timed under another clock rule than this engine's (%d, harness/engine.lua): record_02 (rule %d); "
    .. "`score` against them gives no FSR"):format(engine.CLOCK, engine.CLOCK - 1), 1, true), text)
  c.entries[CARD].proxy.record_02 = entry(200, 2000, 50, rule(engine.CLOCK))
  text = ladder.format(ladder.build(c, CARD, "proxy", {tasks[1]}))
  T.ok(not text:find("another clock rule", 1, true), "every timed reference under this rule: no line\n" .. text)
  local old = engine.CLOCK - 1
  c.entries[CARD].proxy = {record_01 = entry(1000, 5000, 100, rule(old)), record_02 = entry(200, 2000, 50, rule(old))}
  text = ladder.format(ladder.build(c, CARD, "proxy", {tasks[1]}))
  T.ok(text:find(("(%d, harness/engine.lua): every reference;"):format(engine.CLOCK), 1, true), text)
end)

T.case("ladder: references timed by different engine builds keep their verdict, with why", function()
  local eng = function(id) return {software = {engine = id}} end
  local c = {entries = {[CARD] = {proxy = {record_01 = entry(1000, 5000, 100, eng("aaaa")),
                                           record_02 = entry(200, 2000, 50, eng("bbbb")),
                                           record_03 = entry(90, 1900, 60, eng("bbbb"))}}}}
  local L = ladder.build(c, CARD, "proxy", {tasks[1], tasks[2]})
  T.eq(L.transitions[1].verdict, "holds")
  T.eq(L.transitions[1].why, "timed by different engines, aaaa and bbbb: re-time both")
  T.eq(L.transitions[2].why, nil, "the same engine: nothing to say")
  T.ok(ladder.format(L):find("| holds (timed by different engines, aaaa and bbbb: re-time both) |", 1, true), ladder.format(L))
  -- times counted by different clock rules (an entry recording its software but no rule: rule 1) are
  -- not compared at all
  local engine = require "speedrun.harness.engine"
  local clk = function(n) return {software = {engine = "aaaa", clock = n}} end
  local c2 = {entries = {[CARD] = {proxy = {record_01 = entry(1000, 5000, 100, eng("aaaa")),
                                            record_02 = entry(200, 2000, 50, clk(engine.CLOCK)),
                                            record_03 = entry(90, 1900, 60, clk(engine.CLOCK))}}}}
  local L2 = ladder.build(c2, CARD, "proxy", {tasks[1], tasks[2]})
  T.eq(L2.transitions[1].verdict, "not measured")
  T.eq(L2.transitions[1].why, ("timed by different clock rules, 1 and %d (harness/engine.lua): re-time both"):format(engine.CLOCK))
  T.eq(L2.transitions[2].verdict, "does not hold", "the same rule: compared")
end)

T.case("ladder: the counted warm-up beside the timed steps; a transition the timed steps alone would hold says so", function()
  local function runs(times, warm) return {times_ms = times, warmup_counted_ms = warm} end
  local c = {entries = {[CARD] = {proxy = {
    record_01 = entry(100, 1450, 50, runs({1500, 1400, 1450}, {300, 200, 250})),   -- timed steps 1200, 1200, 1200
    record_02 = entry(90, 1350, 50, runs({1400, 1300, 1350}, {250, 150, 200})),    -- 1150 each: 100 < 150, 50 > 0
    record_03 = entry(80, 1340, 50, runs({1390, 1290, 1340}, {200, 150, 190})),    -- 1190, 1140, 1150: 0 faster
    record_04 = entry(70, 1300, 50)}}}}                                           -- no per-run lists
  local L = ladder.build(c, CARD, "proxy", {tasks[1], tasks[2], tasks[3]})
  T.eq(L.references[1].split.warm, 250) T.eq(L.references[1].split.warm_std, 50) T.eq(L.references[1].split.steps_std, 0)
  T.eq(L.references[4].split, nil, "an entry without the lists")
  local v = L.transitions
  T.eq(v[1].verdict, "does not hold")
  T.ok(v[1].why and v[1].why:find("the timed steps alone hold, 50 ms > 0", 1, true), tostring(v[1].why))
  T.eq(v[1].why, "steps 100 → 90 (-10 %), 12.00 → 12.78 ms a step (+6 %); the timed steps alone hold, 50 ms > 0: "
       .. "the counted warm-up's spread decides it",
       "its steps and their cost, then the warm-up's part")
  T.eq(v[2].verdict, "does not hold")
  T.eq(v[2].why, "steps 90 → 80 (-11 %), 12.78 → 14.50 ms a step (+13 %)",
       "the timed steps do not hold either: only the split (1160 ms of timed steps over 80)")
  T.eq(v[3].why, nil, "no lists, nothing to say")
  local text = ladder.format(L)
  T.ok(text:find("| 1450 ± 50 (3 runs; warm-up 250 ± 50) |", 1, true), text)
  T.ok(text:find("| 1300 ± 50 (3 runs) |", 1, true), text)
end)

T.case("ladder: how often a score of the tuned budget passes, from the runs at that budget", function()
  local tune = require "speedrun.harness.tune"
  local e = entry(100, 1000, 10)
  e.tune.probes = {{steps = 140, val_losses = {5.30, 5.31, 5.32}}, {steps = 100, val_losses = {5.40, 5.41, 5.42}},
                   {steps = 90, val_losses = {5.50, 5.51, 5.52}}}
  e.tune.confirmations = {{steps = 100, val_losses = {5.41, 5.42, 5.46}}}
  e.tune.cut.val_losses = {5.47, 5.49, 5.52}
  local L = ladder.build({entries = {[CARD] = {proxy = {record_01 = e}}}}, CARD, "proxy", {})
  local r = L.references[1]
  local want = tune.power({{values = {5.40, 5.41, 5.42}}, {values = {5.41, 5.42, 5.46}}}, 5.5, 0.01, 3)
  T.ok(math.abs(r.pass_prob - want) < 1e-12, "pooled from the budget's probe and confirmation only")
  T.ok(r.pass_prob > 0.5 and r.pass_prob < 0.99, tostring(r.pass_prob))
  T.ok(r.cut.pass_prob < 0.05, "the cut's runs sit at the target")
  local text = ladder.format(L)
  T.ok(text:find(("| record_01 | 100 | yes, confirmed | ~%.0f %% | 80: fails (p 0.99; passes ~%.0f %%)"):format(100 * want, 100 * r.cut.pass_prob), 1, true), text)
  -- a budget tuned for scores of 5 runs: its estimates are of 5-run scores, and the table says so
  e.tune.runs = 5
  L = ladder.build({entries = {[CARD] = {proxy = {record_01 = e}}}}, CARD, "proxy", {})
  r = L.references[1]
  want = tune.power({{values = {5.40, 5.41, 5.42}}, {values = {5.41, 5.42, 5.46}}}, 5.5, 0.01, 5)
  T.ok(math.abs(r.pass_prob - want) < 1e-12, "of 5-run scores")
  T.ok(ladder.format(L):find(("| ~%.0f %% (5-run scores) |"):format(100 * want), 1, true), ladder.format(L))
end)

T.case("ladder: a reference whose cut passes (or would pass > 10 % of scores) is not tight: its tasks not scorable", function()
  local tight, passing, likely, pending = entry(100, 1000, 10), entry(90, 800, 10), entry(80, 700, 10), entry(70, 600, 10)
  tight.tune.cut.val_losses = {5.58, 5.60, 5.62}                           -- the cut misses the target: tight
  passing.tune.cut = {steps = 72, pass = true, p = 0.004, val_losses = {5.45, 5.46, 5.47}}
  likely.tune.cut = {steps = 64, pass = false, p = 0.012, val_losses = {5.45, 5.46, 5.47}}  -- failed once, passes ~50 %
  pending.tune.cut = json.null                                               -- a search cut before its cut ran
  local c = {entries = {[CARD] = {proxy = {record_01 = tight, record_02 = passing, record_03 = likely, record_04 = pending,
                                           record_05 = entry(60, 100, 5)}}}}
  local L = ladder.build(c, CARD, "proxy", {tasks[1], tasks[2], tasks[3], tasks[4]})
  T.eq(L.references[1].loose, nil)
  T.ok(L.references[2].loose:find("cut to 72 steps still reaches the target", 1, true), L.references[2].loose)
  T.ok(L.references[3].loose:find("cut to 64 steps fails this time but passes a score ~", 1, true), L.references[3].loose)
  T.ok(L.references[4].loose:find("never run", 1, true), L.references[4].loose)
  T.eq(L.transitions[1].why, "not scorable: record_02 not tight", "the verdict is the times', the why the score's")
  T.eq(L.transitions[1].verdict, "holds")
  T.eq(L.transitions[2].why, "not scorable: record_02 and record_03 not tight")
  T.eq(L.transitions[4].why, "not scorable: record_04 not tight")
  T.eq(L.transitions[3].scorable, false)
  local text0 = ladder.format(L)
  local none = "accepts against this file (on the data it was measured on): 0 of 4"
  T.eq(text0:sub(-#none), none, "the last line, no task listed")
  local text = ladder.format(L)
  T.ok(text:find("| record_03 | 80 | yes | - | 64: fails (p 0.012; passes ~", 1, true) and text:find("%%%): %*%*not tight%*%* |"), text)
  T.ok(not text:find("| record_01 |[^\n]*not tight"), text)
  -- micro and full are timed ladders: their cuts say nothing about scoring
  local M = ladder.build({entries = {[CARD] = {micro = {record_01 = passing, record_02 = tight}}}}, CARD, "micro", {tasks[1]})
  T.eq(M.transitions[1].why, nil)
end)

T.case("ladder: a score notes references whose tuned budget passes too rarely", function()
  local function ref(values)
    return {tune = {steps = 100, target = 5.5, runs = 3, alpha = 0.01,
                    probes = {{steps = 100, val_losses = values}}, confirmations = {}}}
  end
  local firm, shaky = ref({5.40, 5.405, 5.41}), ref({5.47, 5.48, 5.475})
  T.eq(ladder.reliability_note({{"record_04", firm}, {"record_05", firm}}), nil, "both reliable: no note")
  T.eq(ladder.reliability_note({{"record_04", {steps = 100}}, {"record_05", firm}}), nil, "no tune record: nothing to say")
  local n = ladder.reliability_note({{"record_04", firm}, {"record_05", shaky}})
  T.ok(n and n:find("record_05 ~", 1, true) and not n:find("record_04", 1, true) and n:find("tune-steps", 1, true), tostring(n))
end)

T.case("calibrate --show: the file's only card, or --card; errors name what is missing", function()
  local W = T.workspace("ladder", {})
  local path = W.tmp .. "/cal.json"
  T.write(path, json.encode(calib))
  local rc, out = W.run("calibrate --show --calibration " .. T.shell_quote(path))
  T.eq(rc, 0, out)
  T.ok(out:find("ladder: " .. CARD .. ", scale proxy", 1, true) and out:find("| 2 | record_02 → record_03 |", 1, true), out)
  rc, out = W.run("calibrate --show --card 'Other GPU' --calibration " .. T.shell_quote(path))
  T.eq(rc, 2, out)
  T.ok(out:find("no entries for the card Other GPU", 1, true), out)
  rc, out = W.run("calibrate --show --scale full --calibration " .. T.shell_quote(path))
  T.eq(rc, 2, out)
  T.ok(out:find("no entries at scale full", 1, true), out)
end)

T.case("a calibration file that is not one stops calibrate, show and score before any run, and is not rewritten", function()
  local W = T.workspace("ladder-junk", {})
  local sq = T.shell_quote
  T.write(W.ws .. "/recipe.lua", assert(io.open("../tasks/record_01/recipe.lua")):read("a"))   -- task 1's start
  for _, junk in ipairs {'{"entries": {"GPU": ', '[1, 2, 3]', '{"entries": 7}'} do
    local path = W.tmp .. "/junk.json"
    T.write(path, junk)
    local rc, out = W.run("calibrate --show --calibration " .. sq(path))
    T.eq(rc, 2, out)
    T.ok(out:find("is not one", 1, true) and out:find(path, 1, true), out)
    rc, out = W.run("calibrate --tasks 1 --runs 2 --device cpu --calibration " .. sq(path) .. " --out " .. sq(W.tmp .. "/junk-runs"))
    T.eq(rc, 2, out)
    T.ok(out:find("nothing was written to it", 1, true), out)
    T.eq(T.read(W.tmp .. "/junk-runs/record_01/run-1/results.json"), nil, "no run started")
    rc, out = W.run("score " .. sq(W.ws) .. " --task 1 --device cpu --calibration " .. sq(path) .. " --out " .. sq(W.tmp .. "/junk-score"))
    T.eq(rc, 2, out)
    T.ok(out:find("is not one", 1, true), out)
    T.eq(T.read(path), junk, "the file is left as it was")
  end
end)

T.done()
