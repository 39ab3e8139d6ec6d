-- Cheats against the parent side of `speedrun score` (issue 14, classes 4-6), each a workspace of
-- tests/harness/recipes/good.lua plus a few lines (tests/harness/recipes/cheat_*.lua), scored as
-- an agent's workspace is (`speedrun score WS --task 1`, micro scale, CPU, synthetic shards kept
-- outside the workspace), with an honest control that passes in the same test:
--   4. reusing an earlier run's weights (same score, the next score, a train run's output, a
--      hard link or a copy in the workspace) and hard links / symlinks to the data;
--   5. forging the run's files (log.txt, recipe.log, job.json);
--   6. scoring against the workspace's own target (no calibration entry for the task);
-- and the plausibility flags (identical losses across seeds, a loss far below the target
-- record's, an FSR within the calibration's noise). docs/harness.md "Threat model".
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local json = require "speedrun.json"
local data = require "speedrun.data"

local C = dofile("harness/cheats_fixture.lua")("cheats_parent")
local tmp, sh, read, write, RUN = C.tmp, C.sh, C.read, C.write, C.RUN
local speedrun, workspace, calibration, score, refused = C.speedrun, C.workspace, C.calibration, C.score, C.refused
local honest_passes, REC1, REC2, CALIB = C.honest_passes, C.REC1, C.REC2, C.CALIB

-- a calibration file `name` of the references REC1 and REC2 with some fields of each changed
local function refs(name, over1, over2)
  local r1, r2 = {}, {}
  for k, v in pairs(REC1) do r1[k] = v end
  for k, v in pairs(REC2) do r2[k] = v end
  for k, v in pairs(over1) do r1[k] = v end
  for k, v in pairs(over2) do r2[k] = v end
  return calibration(name, {record_01 = r1, record_02 = r2})
end

T.case("class 4: later runs of a score load run 1's weights -> rejected; honest control passes", function()
  honest_passes()
  -- the default output folder: the cheat looks next to its own ctx.out_dir (and, first, for a
  -- weights file in the workspace: probing for one is itself refused, so run 1 is rejected too)
  local s, text = refused(workspace("reuse", "cheat_reuse"), "rejected", "reads only its source files")
  for i = 1, 3 do T.eq(s.runs[i].status, "rejected", "run " .. i) end
  T.ok(text:find("may read only inside the workspace", 1, true), "the earlier run's output is out of reach too\n" .. text)
end)

T.case("class 4: a score loads the weights a train run left in the workspace's runs folder -> rejected", function()
  local ws = workspace("pretrained", "cheat_reuse")
  local rc, text = speedrun("train " .. sh(ws .. "/recipe.lua") .. " --scale micro --quiet --out " .. sh(ws .. "/runs/pre") .. RUN)
  T.eq(rc, 0, text)
  refused(ws, "rejected", "off limits")
  honest_passes()
end)

T.case("class 4: weights hard-linked into the workspace -> rejected; copied -> rejected", function()
  local pre = tmp .. "/pre"
  os.execute("rm -rf " .. sh(pre))
  local ws = workspace("linked", "cheat_reuse")
  local rc, text = speedrun("train " .. sh(ws .. "/recipe.lua") .. " --scale micro --quiet --out " .. sh(pre) .. RUN)
  T.eq(rc, 0, text)
  local saved = read(pre .. "/w.bin") and pre .. "/w.bin" or pre .. "/scratch/w.bin"
  os.execute("ln " .. sh(saved) .. " " .. sh(ws .. "/w.bin"))
  refused(ws, "rejected", "hard link")
  -- a copy: a recipe reads only its source files from the workspace
  os.execute("rm " .. sh(ws .. "/w.bin") .. " && cp " .. sh(saved) .. " " .. sh(ws .. "/w.bin"))
  refused(ws, "rejected", "reads only its source files")
  honest_passes()
end)

T.case("class 4: weights written into the recipe's source -> the workspace's size cap", function()
  local guard = require "speedrun.harness.guard"
  local ws = workspace("bigsource", "good")
  -- half a MiB and more of Lua literals beside the recipe (what weights as source would be)
  local chunk = string.rep("0.0123, ", 8192)
  write(ws .. "/weights.lua", "return {" .. string.rep(chunk, math.ceil(guard.MAX_SOURCE_BYTES / #chunk) + 1) .. "}")
  refused(ws, "rejected", "source files .* exceed")
  -- other files do not count (the task's TASK.md, a notes file): only what a recipe may read
  os.execute("mv " .. sh(ws .. "/weights.lua") .. " " .. sh(ws .. "/notes.txt"))
  local rc, text = score(ws)
  T.eq(rc, 0, text)
end)

T.case("round 16: weights in a workspace file named by a number, io.open(1) -> rejected (cheat_numpath)", function()
  local ws = workspace("numpath", "cheat_numpath")
  -- the agent's own unrestricted run trains 30 honest steps and leaves the weights in <workspace>/1
  local rc, text = speedrun("train " .. sh(ws .. "/recipe.lua") .. " --scale micro --steps 30 --quiet --out "
                            .. sh(tmp .. "/numpath-pre") .. RUN)
  T.eq(rc, 0, text)
  T.ok(read(ws .. "/1"), "the weights in the workspace's file 1\n" .. text)
  -- a target 10 steps from scratch miss (~2.6; good.lua's 30 steps: ~1.45): only the planted
  -- weights reach it
  local tight = calibration("calib-numpath", {record_01 = REC1, record_02 = {mean_ms = 5e5, std_ms = 10, runs = 3,
    target_val_loss = 1.75, val_tokens = 512, val_loss_mean = 1.5, val_loss_std = 0.06}})
  local _, out, s = score(ws, nil, tight)
  T.ok(s and s.verdict ~= "pass", "verdict " .. tostring(s and s.verdict) .. "\n" .. out)
  for i = 1, 3 do
    local r = s.runs[i]
    T.eq(r.status, "rejected", "run " .. i .. "\n" .. out)
    T.ok(tostring(r.failure.message):find("reads only its source files", 1, true), tostring(r.failure.message))
  end
  -- every function that takes a path: a number is the file of that name, checked as one
  local READ, WRITE = "reads only its source files", "may write only inside the run's output folder"
  for what, c in pairs {write = {"io.open(2, 'w')", WRITE}, lines = {"io.lines(1)", READ}, loadfile = {"loadfile(1)", READ},
                        dofile = {"dofile(1)", READ}, remove = {"os.remove(1)", WRITE}, rename = {"os.rename(1, 2)", WRITE}} do
    local ws_ = C.inline("numpath-" .. what, ("local _ = pcall(function() return %s end)\nreturn dofile('good.lua')\n"):format(c[1]))
    write(ws_ .. "/1", "return 1\n")
    refused(ws_, "rejected", c[2])
  end
  honest_passes()
end)

T.case("round 16: source files in a folder the recipe may enter but not list (chmod 111) -> refused, not uncounted", function()
  local guard = require "speedrun.harness.guard"
  local ws = workspace("hiddendir", "good")
  os.execute("mkdir -p " .. sh(ws .. "/hidden"))
  local chunk = string.rep("0.0123, ", 8192)   -- more than the cap of Lua literals, where the walk cannot list
  write(ws .. "/hidden/w.lua", "return {" .. string.rep(chunk, math.ceil(guard.MAX_SOURCE_BYTES / #chunk) + 1) .. "}")
  write(ws .. "/recipe.lua", "local w = dofile('hidden/w.lua')\nreturn dofile('good.lua')\n")
  -- the rule, whoever runs it (root lists any folder): a folder that cannot be listed is refused
  local listdir = H.listdir
  H.listdir = function(d) if d:find("/hidden$") then return nil, d .. ": Permission denied" end return listdir(d) end
  local why = guard.check_workspace(ws, {})
  H.listdir = listdir
  T.ok(why and why:find("cannot be listed", 1, true), tostring(why))
  -- the whole cheat where permissions bind (a non-root scorer): the 512 KiB cap counted nothing there
  os.execute("chmod 111 " .. sh(ws .. "/hidden"))
  if not H.listdir(ws .. "/hidden") then refused(ws, "rejected", "cannot be listed") end
  os.execute("chmod 755 " .. sh(ws .. "/hidden"))
  refused(ws, "rejected", "source files .* exceed")
end)

T.case("class 4: a hard link or a symlink to the validation shard in the workspace -> rejected", function()
  local ws = workspace("hardlink", "cheat_readlink")
  os.execute("ln " .. sh(tmp .. "/data/syn_val_000000.bin") .. " " .. sh(ws .. "/val.bin"))
  refused(ws, "rejected", "hard link")
  ws = workspace("symlink", "cheat_readlink")
  os.execute("ln -s " .. sh(tmp .. "/data/syn_val_000000.bin") .. " " .. sh(ws .. "/val.bin"))
  refused(ws, "rejected", "off limits")
  honest_passes()
end)

T.case("round 13: a run folder planted with weights and made impossible to empty stops the run (cheat_stickyout)", function()
  local guard = require "speedrun.harness.guard"
  -- the rule, whatever the file system allows: a removal that fails is an error, not a fresh folder
  local d = tmp .. "/sticky-unit"
  os.execute("rm -rf " .. sh(d) .. " && mkdir -p " .. sh(d .. "/scratch") .. " && touch " .. sh(d .. "/scratch/w.bin"))
  local remove = guard.remove_tree
  guard.remove_tree = function() return nil end      -- as under chattr +i
  local ok, err = pcall(guard.fresh_dir, d .. "/scratch")
  guard.remove_tree = remove
  T.ok(not ok and tostring(err):find("cannot be emptied", 1, true), tostring(err))
  T.ok(pcall(guard.fresh_dir, d .. "/scratch") and not read(d .. "/scratch/w.bin"), "removable: emptied")
  -- the whole cheat where chattr works (root, a file system with the immutable flag)
  local ws = workspace("stickyout", "cheat_stickyout")
  local out = tmp .. "/sticky-out"
  os.execute("chattr -R -i " .. sh(out) .. " 2>/dev/null; rm -rf " .. sh(out))
  os.execute("mkdir -p " .. sh(out .. "/run1/scratch") .. " && head -c 4096 /dev/zero > " .. sh(out .. "/run1/scratch/w.bin"))
  if not os.execute("chattr +i " .. sh(out .. "/run1/scratch") .. " 2>/dev/null") then
    os.execute("rm -rf " .. sh(out))
    return   -- no immutable flag here: the rule above is the test
  end
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 1 --calibration " .. sh(CALIB) .. " --out " .. sh(out) .. RUN)
  os.execute("chattr -R -i " .. sh(out) .. "; rm -rf " .. sh(out))
  T.ok(rc ~= 0 and text:find("cannot be emptied", 1, true), "the run does not start\n" .. text)
  T.ok(not text:find("planted weights in ctx.out_dir:%s*true"), "the recipe never saw the planted file\n" .. text)
end)

T.case("round 15: the child reads the shards the id hashed, resolved, never a pattern of its own", function()
  -- a data folder reached through a link: the child (working folder: the workspace) gets the
  -- real paths the parent resolved and hashed, not the pattern
  local ws = workspace("resolved", "good")
  local link = tmp .. "/data-link"
  os.execute("rm -f " .. sh(link) .. " && ln -s " .. sh(tmp .. "/data") .. " " .. sh(link))
  local out = tmp .. "/resolved-out"
  local rc, text = speedrun("train " .. sh(ws .. "/recipe.lua") .. " --scale micro --restricted --device cpu --threads 1 --quiet"
                            .. " --train-files " .. sh(link .. "/syn_train_*.bin") .. " --val-files " .. sh(link .. "/syn_val_*.bin")
                            .. " --out " .. sh(out))
  local job = json.decode(read(out .. "/job.json"))
  T.eq(type(job.train_files), "table", "a list, not a pattern\n" .. text)
  T.eq(#job.train_files, 1)
  T.eq(job.train_files[1], H.realpath(tmp .. "/data/syn_train_000001.bin"), "the real path")
  T.eq(job.val_files[1], H.realpath(tmp .. "/data/syn_val_000000.bin"))
  local r = json.decode(read(out .. "/results.json"))
  T.eq(r.data, require("speedrun.harness.dataid").id(job.train_files, job.val_files), "the id of what the child read")
  T.eq(rc, 0, text)
end)

T.case("round 19: no validation shard is mapped while eval answers (native code on a GPU may read host memory)", function()
  -- the validation loader reads each chunk's inputs from the file, and its targets after eval
  -- answered: nothing later than eval's inputs lies in the child's memory (valmaps.lua's eval looks
  -- at /proc/self/maps, allowed in an unrestricted run)
  local ws = workspace("valmaps", "valmaps")
  local out = tmp .. "/valmaps-out"
  local rc, text = speedrun("train " .. sh(ws .. "/recipe.lua") .. " --scale micro --quiet --out " .. sh(out) .. RUN)
  T.eq(rc, 0, text)
  local r = json.decode(read(out .. "/results.json"))
  T.eq(r.status, "valid", text)
  T.ok(r.checks.causality.ok and r.checks.eval_stateless.ok, "the checks ran their evals too")
end)

T.case("class 5: the recipe cannot read or forge log.txt, recipe.log, job.json", function()
  local ws = workspace("forge", "cheat_forge")
  local s, text = refused(ws, "rejected", "recipes may")
  local root = text:match("score: (%S+)/score%.json")
  for i = 1, 3 do
    local run = root .. "/run" .. i
    local log = read(run .. "/log.txt")
    -- the parent's log, untouched (whether the run reached its last step depends on when the
    -- violation stopped it, which varies with the machine's load)
    T.ok(log and not log:find("FORGED") and log:find("^recipe cheat%-forge, scale micro"), "log.txt of run " .. i .. "\n" .. tostring(log))
    T.ok(read(run .. "/recipe.log"), "recipe.log of run " .. i)
    local job = json.decode(read(run .. "/job.json") or "null")
    T.ok(type(job) == "table" and job.recipe == H.realpath(ws .. "/recipe.lua"), "job.json of run " .. i)
    T.eq(json.decode(read(run .. "/results.json")).status, s.runs[i].status)
  end
  honest_passes()
end)

T.case("class 6: --task N without calibration entries -> an error, never the workspace's target", function()
  local ws = workspace("target", "cheat_target")
  for _, cal in ipairs {calibration("calib-none", {}), calibration("calib-one", {record_01 = REC1})} do
    local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(cal) .. RUN)
    T.eq(rc, 2, text)
    T.ok(text:find("no calibration for record_0", 1, true), text)
    T.ok(not text:find("verdict: pass", 1, true), text)
  end
  -- with the calibration, the target record's target and validation size, not the workspace's
  local s, text = refused(ws, "invalid", "above the target 3%.0000")
  local root = text:match("score: (%S+)/score%.json")
  for i = 1, 3 do
    local r = json.decode(read(root .. "/" .. s.runs[i].results))
    T.eq(r.config.target_val_loss, 3.0)
    T.eq(r.config.val_tokens, 512)
  end
  T.eq(s.summary.ttest.target, 3.0)
  local rc = speedrun("score " .. sh(ws) .. " --task 1 --target 1000" .. RUN .. " --calibration " .. sh(CALIB))
  T.eq(rc, 2, "--target with --task is a usage error")
  -- at proxy scale only references tuned to their target (budget = the tuned one), tight (their cut
  -- ran and fails) and timed alone count
  local tuned = {steps = 20, target = 3.0, runs = 3, alpha = 0.01, cut = {steps = 16, pass = false, p = 0.99, val_losses = {3.2, 3.21, 3.22}}}
  local function with_cut(cut) return {steps = 20, target = 3.0, runs = 3, alpha = 0.01, cut = cut} end
  local function proxy_cal(name, r2)
    local path = tmp .. "/" .. name .. ".json"
    local r1 = {mean_ms = 1e6, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, steps = 20, tune = tuned}
    write(path, json.encode({schema = "speedrun.calibration/1", entries = {[H.card(false)] = {proxy = {record_01 = r1,
      record_02 = r2}}}}, true))
    return path
  end
  local R2 = {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, steps = 20}
  for _, c in ipairs {{"untuned", R2, "not of a budget tuned"},
                      {"recut", {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, steps = 16, tune = tuned},
                       "not of a budget tuned"},
                      {"retargeted", {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.5, val_tokens = 512, steps = 20, tune = tuned},
                       "not of a budget tuned"},
                      {"shared", {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, steps = 20, tune = tuned,
                       timed_alone = false}, "other runs shared the device"},
                      {"untimed", {mean_ms = json.null, std_ms = json.null, runs = 3, target_val_loss = 3.0, val_tokens = 512,
                       steps = 20, tune = tuned}, "has no train time"},
                      {"loose", {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, steps = 20,
                       tune = with_cut({steps = 16, pass = true, p = 0.001, val_losses = {2.9, 2.91, 2.92}})},
                       "is not tight: its budget cut to 16 steps still reaches the target"},
                      {"likely", {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, steps = 20,
                       tune = with_cut({steps = 16, pass = false, p = 0.012, val_losses = {2.95, 2.96, 2.97}})},
                       "fails this time but passes a score"},
                      {"cut pending", {mean_ms = 5e5, std_ms = 10, runs = 3, target_val_loss = 3.0, val_tokens = 512, steps = 20,
                       tune = with_cut(nil)}, "its 80 % cut was never run"}} do
    local rc2, text2 = speedrun("score " .. sh(ws) .. " --task 1 --scale proxy --runs 3 --calibration "
      .. sh(proxy_cal("calib-" .. c[1], c[2])) .. RUN)
    T.eq(rc2, 2, c[1] .. ": " .. text2)
    T.ok(text2:find(c[3], 1, true), c[1] .. ": " .. text2)
  end
  -- a score of more runs than the references were tuned for: their cuts' estimates do not hold
  local two = {steps = 20, target = 3.0, runs = 2, alpha = 0.01, cut = {steps = 16, pass = false, p = 0.99, val_losses = {3.2, 3.21}}}
  local cal2 = proxy_cal("calib-runs", {mean_ms = 5e5, std_ms = 10, runs = 2, target_val_loss = 3.0, val_tokens = 512, steps = 20,
    tune = two})
  local rc3, text3 = speedrun("score " .. sh(ws) .. " --task 1 --scale proxy --runs 3 --calibration " .. sh(cal2) .. RUN)
  T.eq(rc3, 2, text3)
  T.ok(text3:find("tuned for scores of 2 runs", 1, true), text3)
  -- and without --runs, as many as they were tuned for (the fewer of the two); fewer may be asked
  local calibfile = require "speedrun.harness.calibfile"
  local e3 = {tune = tuned}
  local e2 = {tune = two}
  T.eq(calibfile.task_runs({scale = "proxy"}, e3, e2, 1, "c"), "2")
  T.eq(calibfile.task_runs({scale = "proxy"}, e3, e3, 1, "c"), "3")
  T.eq(calibfile.task_runs({scale = "proxy", runs = "2"}, e3, e3, 1, "c"), "2", "fewer")
  T.eq(select(2, calibfile.task_runs({scale = "proxy", runs = "4"}, e3, e3, 1, "c")) ~= nil, true, "more: refused")
  T.eq(calibfile.task_runs({scale = "micro", runs = "4"}, e3, e2, 1, "c"), "4", "other scales: as asked")
  T.eq(calibfile.task_runs({scale = "proxy"}, {}, {}, 1, "c"), nil, "untuned: the default")
  honest_passes()
end)

T.case("plausibility: a loss far below the target record's is flagged; FSR within noise said so", function()
  local ws = workspace("plaus", "good")
  -- the target record (as calibrated) reaches 2.9: the honest recipe's ~1.45 is implausibly low
  local high = calibration("calib-high", {record_01 = REC1, record_02 = {mean_ms = 5e5, std_ms = 10, runs = 3,
    target_val_loss = 3.0, val_tokens = 512, val_loss_mean = 2.9, val_loss_std = 0.01}})
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(high) .. RUN)
  T.eq(rc, 1, text)
  T.ok(text:find("verdict: flagged", 1, true) and text:find("far below", 1, true), text)
  -- records 1 and 2 calibrated 10 ms apart with a 300 ms noise: the FSR is noise
  local noisy = calibration("calib-noisy", {record_01 = {mean_ms = 1000, std_ms = 300, runs = 3, target_val_loss = 3.0,
    val_tokens = 512}, record_02 = {mean_ms = 990, std_ms = 300, runs = 3, target_val_loss = 3.0, val_tokens = 512}})
  rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(noisy) .. RUN)
  T.eq(rc, 0, text)
  local s = json.decode(read(text:match("score: (%S+/score%.json)")))
  T.eq(s.verdict, "pass")
  T.eq(s.fsr.within_noise, true)
  T.ok(text:find("within the calibration's noise", 1, true), text)
end)

T.case("round 17: a run kept just above the target escaped the flags, counted all the same (cheat_missrun) -> flagged", function()
  -- a target 0.3 above what good.lua reaches: one honest run in five just above it still lets ten
  -- runs pass the t-test, so the run that trained nothing on the clock was worth its place
  local tight = calibration("calib-missrun", {record_01 = REC1, record_02 = {mean_ms = 5e5, std_ms = 10, runs = 3,
    target_val_loss = 1.75, val_tokens = 512, val_loss_mean = 1.5, val_loss_std = 0.06}})
  local ws = workspace("missrun", "cheat_missrun", {["cheat_evalhidden.lua"] = "cheat_evalhidden"})
  local rc, out, s = score(ws, "--runs 10", tight)
  T.ok(s, out)
  for _, i in ipairs {5, 10} do   -- the runs that kept their batches and trained in eval
    T.eq(s.runs[i].status, "invalid", out)
    T.ok(s.runs[i].train_time_ms < 0.1 * s.runs[1].train_time_ms, "run " .. i .. " trained nothing on the clock\n" .. out)
  end
  T.eq(rc, 1, out)
  T.eq(s.verdict, "flagged", out)
  T.ok(out:find("seed 5: the final validation spent %d+x the training's time per token"), out)
  local hrc, hout, hs = score(workspace("missrun-honest", "good"), "--runs 10", tight)
  T.eq(hrc, 0, hout)
  T.eq(hs.verdict, "pass", hout)
end)

T.case("references timed by another engine build: the FSR says so; the same build: no note", function()
  local engine = require "speedrun.harness.engine"
  local ws = workspace("engine", "good")
  local function with_engine(id)
    return refs("calib-engine-" .. id, {software = {engine = id, clock = engine.CLOCK}},
                {software = {engine = id, clock = engine.CLOCK}})
  end
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_engine("0123456789abcdef")) .. RUN)
  T.eq(rc, 0, text)
  T.ok(text:find("note: the references were timed by another engine build (0123456789abcdef; this one is "
    .. assert(engine.id()), 1, true), text)
  local S = json.decode(read(text:match("score: (%S+/score%.json)")))
  T.eq(S.software.engine, engine.id(), "the score records its engine")
  rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_engine(engine.id())) .. RUN)
  T.eq(rc, 0, text)
  T.ok(not text:find("another engine build", 1, true), text)
end)

T.case("references whose times were counted by another clock rule: no FSR, and why; this rule's: an FSR", function()
  local engine = require "speedrun.harness.engine"
  local ws = workspace("clockrule", "good")
  local function with_clock(n)
    return refs("calib-clock-" .. tostring(n), {software = {engine = engine.id(), clock = n}},
                {software = {engine = engine.id(), clock = engine.CLOCK}})
  end
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_clock(1)) .. RUN)
  T.eq(rc, 0, text)
  T.ok(text:find(("FSR: n/a: the references' times were counted by the harness's clock rule 1, this harness counts by rule %d")
    :format(engine.CLOCK), 1, true), text)
  local S = json.decode(read(text:match("score: (%S+/score%.json)")))
  T.ok(S.fsr.value == nil or S.fsr.value == json.null, "no FSR against times of another rule")
  T.eq(S.software.clock, engine.CLOCK, "the score records its rule")
  rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_clock(engine.CLOCK)) .. RUN)
  T.eq(rc, 0, text)
  T.ok(text:find("FSR: %d") and not text:find("clock rule", 1, true), text)
end)

T.case("references calibrated from another version of their record's recipe: the FSR says so; this checkout's: no note", function()
  local calibfile = require "speedrun.harness.calibfile"
  local ws = workspace("recipever", "good")
  local function with_sha(sha1, sha2, tag)
    return refs("calib-recipe-" .. tag, {recipe_sha256 = sha1}, {recipe_sha256 = sha2})
  end
  local here1 = assert(calibfile.recipe_sha256(H.source_dir() .. "/tasks/record_01/recipe.lua"))
  local here2 = assert(calibfile.recipe_sha256(H.source_dir() .. "/tasks/record_02/recipe.lua"))
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_sha(here1, string.rep("0", 64), "old")) .. RUN)
  T.eq(rc, 0, text)
  T.ok(text:find("note: record_02 calibrated from another version of its recipe than this checkout's", 1, true), text)
  local S = json.decode(read(text:match("score: (%S+/score%.json)")))
  T.ok(type(S.fsr.recipe_note) == "string" and not S.fsr.recipe_note:find("record_01", 1, true), tostring(S.fsr.recipe_note))
  rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_sha(here1, here2, "same")) .. RUN)
  T.eq(rc, 0, text)
  T.ok(not text:find("another version", 1, true), text)
end)

T.case("references measured on other data: refused; unrecorded: said so; the same data: accepted", function()
  local dataid = require "speedrun.harness.dataid"
  local ws = workspace("data", "good")
  local mine = assert(dataid.id(tmp .. "/data/syn_train_*.bin", tmp .. "/data/syn_val_*.bin"))
  local function with_data(id, tag)
    return refs("calib-data-" .. tag, {data = id}, {data = (tag == "one-other") and "ffffffffffffffff" or id})
  end
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_data(mine, "same")) .. RUN)
  T.eq(rc, 0, text)
  T.ok(not text:find("record its data", 1, true), text)
  local S = json.decode(read(text:match("score: (%S+/score%.json)")))
  T.ok(S.fsr and (S.fsr.data_note == nil or S.fsr.data_note == json.null), "no data note")
  local R = json.decode(read(text:match("score: (%S+)/score%.json") .. "/run1/results.json"))
  T.eq(R.data, mine, "each run records the data it read")
  for _, tag in ipairs {"other", "one-other"} do
    rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(with_data(tag == "other" and "0123456789abcdef" or mine, tag)) .. RUN)
    T.eq(rc, 2, text)
    T.ok(text:find("was calibrated on other data", 1, true) and text:find(mine, 1, true), text)
    T.ok(not text:find("== score run", 1, true), "refused before any run\n" .. text)
  end
  rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 3 --calibration " .. sh(CALIB) .. RUN)
  T.eq(rc, 0, text)
  T.ok(text:find("note: the calibration of record_01 and record_02 does not record its data", 1, true), text)
end)

T.case("dataid: the same data gives the same id; any change to a shard gives another", function()
  local dataid = require "speedrun.harness.dataid"
  local d = tmp .. "/dataid"
  os.execute("rm -rf " .. sh(d) .. " && mkdir -p " .. sh(d))
  assert(data.write_shard(d .. "/a_train_000001.bin", T.token_stream(3000, 1)))
  assert(data.write_shard(d .. "/a_val_000000.bin", T.token_stream(500, 2)))
  local function id() package.loaded["speedrun.harness.dataid"] = nil return assert(require("speedrun.harness.dataid").id(d .. "/a_train_*.bin", d .. "/a_val_*.bin")) end
  local a = id()
  T.eq(#a, 16) T.eq(id(), a, "deterministic")
  assert(data.write_shard(d .. "/a_val_000000.bin", T.token_stream(500, 3)))   -- same size, other tokens
  local b = id()
  T.ok(b ~= a, "validation content changes the id")
  assert(data.write_shard(d .. "/a_train_000001.bin", T.token_stream(3000, 4)))   -- same size, other tokens
  local c = id()
  T.ok(c ~= b, "training content changes the id (cheat_trainshard: a shard rewritten in place, same size)")
  assert(data.write_shard(d .. "/a_train_000001.bin", T.token_stream(3001, 1)))
  T.ok(id() ~= c, "a training shard of another size changes the id")
  assert(data.write_shard(d .. "/a_train_000002.bin", T.token_stream(10, 1)))
  T.ok(id() ~= b, "an added training shard changes the id")
  T.eq(#dataid.glob(d .. "/a_*_00000?.bin"), 3, "glob: * and ?")
  -- round 14: what the loader's glob(3) reads, no more, no less; links refused (a link to
  -- /proc/self/cwd/... reads the scorer's folder here and the workspace in the child)
  local e = id()
  os.execute("ln -s /proc/self/cwd/payload.bin " .. sh(d .. "/.x_train_0.bin"))
  T.eq(id(), e, "a dot file is not a shard (glob(3): * matches no leading dot)")
  T.eq(#dataid.glob(d .. "/.x_*.bin"), 1, "a leading dot in the pattern matches one")
  os.execute("ln -s /proc/self/cwd/payload.bin " .. sh(d .. "/a_train_000000.bin"))
  package.loaded["speedrun.harness.dataid"] = nil
  local none2, why2 = require("speedrun.harness.dataid").id(d .. "/a_train_*.bin", d .. "/a_val_*.bin")
  T.ok(not none2 and why2:find("symbolic link", 1, true), "a linked shard: no id\n" .. tostring(why2))
  os.remove(d .. "/a_train_000000.bin")
  os.execute("ln -s " .. sh(d .. "/a_val_000000.bin") .. " " .. sh(d .. "/a_val_000001.bin"))
  package.loaded["speedrun.harness.dataid"] = nil
  none2, why2 = require("speedrun.harness.dataid").id(d .. "/a_train_*.bin", d .. "/a_val_*.bin")
  T.ok(not none2 and why2:find("symbolic link", 1, true), "a linked validation shard: no id\n" .. tostring(why2))
  -- and a score whose data has no id is refused before any run (round 14: nothing was compared)
  local ws = workspace("noid", "good")
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 1 --calibration " .. sh(CALIB) .. " --device cpu --threads 1"
                            .. " --train-files " .. sh(d .. "/a_train_*.bin") .. " --val-files " .. sh(d .. "/a_val_*.bin"))
  T.ok(rc ~= 0 and text:find("the data's id cannot be computed", 1, true), text)
  os.remove(d .. "/a_val_000001.bin")
  local none, why = dataid.id(d .. "/a_train_*.bin", d .. "/nothing_*.bin")
  T.ok(not none and why:find("no validation file", 1, true), tostring(why))
end)

T.case("dataid: a training shard is hashed once a process while stat says it is unchanged", function()
  local H, dataid = require "speedrun.harness_core", require "speedrun.harness.dataid"
  local d = tmp .. "/dataid_memo"
  os.execute("rm -rf " .. sh(d) .. " && mkdir -p " .. sh(d))
  assert(data.write_shard(d .. "/m_train_000001.bin", T.token_stream(3000, 1)))
  assert(data.write_shard(d .. "/m_val_000000.bin", T.token_stream(500, 2)))
  local real, calls = H.sha256_file, 0
  H.sha256_file = function(p) calls = calls + 1 return real(p) end
  local ok, err = pcall(function()
    local function id() calls = 0 return assert(dataid.id(d .. "/m_train_*.bin", d .. "/m_val_*.bin")), calls end
    local a, n = id()
    T.eq(n, 1) T.eq(select(2, id()), 1, "a file written less than RACY_S ago is hashed every time")
    os.execute("sleep " .. dataid.RACY_S + 0.2)
    T.eq(select(2, id()), 1) T.eq(select(2, id()), 0, "unchanged: remembered")
    local f = assert(io.open(d .. "/m_train_000001.bin", "r+b"))   -- in place: same inode, same size
    f:seek("set", 4000) f:write("\1\2\3\4") f:close()
    local b, n2 = id()
    T.eq(n2, 1, "a write moves the change time: hashed again") T.ok(b ~= a, "and the id changes")
  end)
  H.sha256_file = real
  assert(ok, err)
end)

T.case("round 18: a batch that leaves a random start no room, or that makes later passes the same -> the stream moves", function()
  local function random_ref(e)
    local c = {stream = "random"}
    for k, v in pairs(e) do c[k] = v end
    return c
  end
  local calib = calibration("calib-random", {record_01 = random_ref(REC1), record_02 = random_ref(REC2)})
  local rc, text, s = score(workspace("honest-random", "good"), nil, calib)
  T.eq(rc, 0, text); T.eq(s.verdict, "pass", text); T.eq(s.stream, "random", "the references' stream")
  -- each cheat stops unless it reads the stream it searched a seed on (the shard's first tokens):
  -- before the fix, every run did (global: every start was token 0; bt: every batch from step 2)
  for _, name in ipairs {"cheat_globalspan", "cheat_epochsnap"} do
    local path
    rc, text, s, path = score(workspace(name, name, {["searched_stream.lua"] = "searched_stream"}), nil, calib)
    T.eq(rc, 1, text); T.ok(s and s.verdict ~= "pass", text)
    for i, r in ipairs(s.runs) do
      T.eq(r.status, "lua_error", name .. " run " .. i .. ": the stream moved with its start\n" .. text)
      T.ok(tostring(r.failure.message):find("not the one the seed was searched on", 1, true), text)
      local res = json.decode(read(path:gsub("score%.json$", "run" .. i .. "/results.json")))
      T.eq(res.config.stream.policy, "random")
    end
  end
end)

T.case("CLI: --quiet prints the verdict; no doubled 'rejected:'; scale auto gets its own time limit", function()
  local ws = workspace("quiet", "cheat_readlink")
  os.execute("ln " .. sh(tmp .. "/data/syn_val_000000.bin") .. " " .. sh(ws .. "/val.bin"))
  local rc, text = speedrun("score " .. sh(ws) .. " --task 1 --runs 2 --quiet --calibration " .. sh(CALIB) .. RUN)
  T.eq(rc, 1, text)
  T.ok(text:find("verdict: fail", 1, true), "--quiet still prints the verdict\n" .. text)
  T.ok(not text:find("rejected: rejected:", 1, true), text)
  T.ok(not text:find("step:", 1, true), "--quiet: no log lines\n" .. text)
  local out = tmp .. "/auto"
  rc, text = speedrun("train " .. sh(tmp .. "/ws-honest/recipe.lua") .. " --scale auto --quiet --out " .. sh(out) .. RUN)
  T.eq(rc, 0, text)
  local r = json.decode(read(out .. "/results.json"))
  T.eq(r.scale, "micro")
  T.eq(r.limits.time_s, 600, "scale auto resolved to micro on the CPU: micro's limit")
end)

T.case("docs/harness.md's threat model names the eight classes and the cheat recipes tested here", function()
  local doc = read("../docs/harness.md")
  local tm = doc:match("\n## Threat model\n(.*)$")
  T.ok(tm, "a threat model section")
  for i = 1, 8 do T.ok(tm:find("\n| " .. i .. " |", 1, true), "class " .. i .. " in the table") end
  T.ok(tm:find("test_cheats_parent.lua", 1, true) and tm:find("Out of scope", 1, true), "tests and limits named")
  for _, name in ipairs {"cheat_reuse", "cheat_readlink", "cheat_forge", "cheat_target", "cheat_missrun"} do
    T.ok(read("harness/recipes/" .. name .. ".lua"), name .. " exists")
  end
  for _, name in ipairs {"cheat_globalspan", "cheat_epochsnap"} do
    T.ok(read("harness/recipes/" .. name .. ".lua") and tm:find(name, 1, true), name .. " exists, named in the threat model")
  end
  for test in tm:gmatch("`tests/([%w_/]+%.lua)`") do T.ok(read(test), "the table's test " .. test .. " exists") end
end)

T.done()
