-- Cheat classes 1-3 of issue 14 (the child side of a run), each scored on CPU at micro scale
-- and required not to pass, with the failure kind named; an honest control passes beside them.
--   1. an eval that recognises the causality / statelessness probes (by shape, call count,
--      perturbed positions, answering them in another dtype): rejected by the random re-checks of
--      real validation chunks
--   2. training in the warm-up steps: every step is on the clock (the warm-up beyond a bounded
--      allowance is counted), so the cheat is slower than the honest recipe: FSR 0
--   3. training inside eval (grad mode on, optimizer steps) and in finalizers: rejected
-- Recipes in tests/harness/recipes/cheat_*.lua; data: synthetic shards written here.
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"

local CHEATS = {"cheat_probeshape", "cheat_probecount", "cheat_probepos", "cheat_probedtype", "cheat_warmup", "cheat_evaltrain",
                "cheat_evalstep", "cheat_evalview", "cheat_gc", "cheat_evalgraph"}
local W = T.workspace("cheats-child", {"good", table.unpack(CHEATS)})
local tmp, ws, speedrun = W.tmp, W.ws, W.run
local sh = T.shell_quote
local RUN = " --device cpu --threads 1 " .. W.data

local train, rejected = W.restricted, W.rejected

T.case("honest control: good.lua is valid in score mode, with the checks recorded", function()
  local r, text = train("good")
  T.eq(r.status, "valid", text)
  T.ok(r.checks.causality.ok and r.checks.eval_stateless.ok, "checks passed")
  T.ok(r.metrics.val_loss < 3.0, "trains")
end)

T.case("class 1: an eval that recognises the probe by its shape -> rejected (non-causal)", function()
  rejected("cheat_probeshape", "non%-causal")
end)

T.case("class 1: an eval that counts its calls in the random generator -> rejected (a random draw inside eval)", function()
  rejected("cheat_probecount", "a random draw inside eval")
end)

T.case("class 1: an eval that stays causal only where the probe looks -> rejected (non-causal)", function()
  rejected("cheat_probepos", "non%-causal")
end)

T.case("class 1: an eval that peeks in another dtype on the probe's calls (counted as above) -> rejected", function()
  rejected("cheat_probedtype", "a random draw inside eval")
end)

T.case("class 3: grad mode switched on inside eval (even caught) -> rejected", function()
  rejected("cheat_evaltrain", "inside eval")
end)

T.case("class 3: optimizer steps inside eval, without grad mode -> rejected", function()
  rejected("cheat_evalstep", "inside eval")
end)

T.case("class 3: parameters changed inside eval through detached views -> rejected (state digest)", function()
  rejected("cheat_evalview", "eval changed the recipe's state")
end)

T.case("class 3: a CUDA graph replayed inside eval (its eager fallback on the CPU) -> rejected", function()
  rejected("cheat_evalgraph", "a CUDA graph replay inside eval")
end)

T.case("class 3: a finalizer (__gc) set by the recipe -> rejected", function()
  rejected("cheat_gc", "__gc")
end)

T.case("class 2: training in the warm-up steps is on the clock: not faster than the honest recipe (FSR 0)", function()
  local calib = tmp .. "/calibration.json"
  os.remove(calib)
  local rc, text = speedrun("calibrate --recipe " .. sh(ws .. "/good.lua") .. " --name record_01 --runs 3" .. RUN
                            .. " --calibration " .. sh(calib) .. " --out " .. sh(tmp .. "/cal") .. " --quiet")
  T.eq(rc, 0, text)
  -- record_02: 20% faster than record_01 (the FSR's second point; only the verdict matters here)
  local c = json.decode(io.open(calib):read("a"))
  local card = next(c.entries)
  local e = c.entries[card].micro.record_01
  c.entries[card].micro.record_02 = {mean_ms = e.mean_ms * 0.8, std_ms = 1, target_val_loss = 3.0, val_tokens = 512,
                                     stream = e.stream}   -- the two references' streams must agree
  local cf = io.open(calib, "w")
  cf:write(json.encode(c, true))
  cf:close()
  local function score(recipe)
    local sws = tmp .. "/score-" .. recipe
    os.execute("rm -rf " .. sh(sws))
    H.mkdir(sws)
    local f = io.open(sws .. "/recipe.lua", "w")
    f:write(io.open(ws .. "/" .. recipe .. ".lua"):read("a"))
    f:close()
    local src = io.open(ws .. "/good.lua"):read("a")
    f = io.open(sws .. "/good.lua", "w"); f:write(src); f:close()
    os.execute("rm -rf " .. sh(tmp .. "/score-out-" .. recipe))   -- never an earlier run's score.json
    local code, out = speedrun("score " .. sh(sws) .. " --task 1 --runs 3" .. RUN .. " --calibration " .. sh(calib)
                               .. " --out " .. sh(tmp .. "/score-out-" .. recipe))
    T.ok(io.open(tmp .. "/score-out-" .. recipe .. "/score.json"), "the score ran\n" .. out)
    return json.decode(io.open(tmp .. "/score-out-" .. recipe .. "/score.json"):read("a")), code, out
  end
  local s, code, out = score("cheat_warmup")
  T.ok(s.runs[1].status == "valid", "the cheat's runs are valid (its time is simply counted)\n" .. out)
  T.ok(s.summary.train_time_ms.mean > e.mean_ms,
       ("the warm-up work is counted: %.1f ms vs the honest %.1f ms"):format(s.summary.train_time_ms.mean, e.mean_ms))
  T.ok(s.fsr.raw < 0 and s.fsr.value == 0, "slower than the record it claims to beat: FSR raw " .. tostring(s.fsr.raw))
  for i, run in ipairs(s.runs) do
    local r = json.decode(io.open(tmp .. "/score-out-cheat_warmup/run" .. i .. "/results.json"):read("a"))
    T.ok(r.metrics.warmup_counted_ms > 0 and r.metrics.warmup_counted_ms <= r.metrics.train_time_ms,
         "run " .. i .. ": the warm-up's time beyond its allowance is counted")
  end
  -- the honest control: its warm-up fits the allowance (first-call costs stay out of the score); a
  -- micro run trains ~15 ms, so a loaded 2-core machine moves the counted part by a few ms (3.84 of
  -- 15.27 ms seen once in CI with a compression running beside it): half the train time is the bound
  local g = json.decode(io.open(tmp .. "/cal/record_01/run1/results.json"):read("a"))
  T.ok(g.metrics.warmup_time_ms > 0 and g.metrics.warmup_allowance_ms > 0, "the warm-up is measured")
  T.ok(g.metrics.warmup_counted_ms < 0.5 * g.metrics.train_time_ms, ("honest warm-up counted %.2f ms of %.2f ms")
       :format(g.metrics.warmup_counted_ms, g.metrics.train_time_ms))
end)

T.done()
