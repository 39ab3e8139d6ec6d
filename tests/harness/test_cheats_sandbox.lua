-- Cheats against the sandbox and the rules of eval (found by a red-team pass, 2026-12-05), each a
-- workspace of tests/harness/recipes/good.lua plus a cheat recipe, scored as an agent's workspace
-- is (`speedrun score WS --task 1`, micro scale, CPU) next to an honest control that passes:
--   out of the sandbox: a denied harness module loaded under another name (speedrun..harness.x),
--     a workspace module loaded by the process's own require (./?.lua), the tensors' metatable
--     changed (a __gc or __index hook that trains while the clock is stopped);
--   state kept for or by eval: in a library table, in a coroutine, in Lua strings (an eval that
--     remembers what it answered), and an eval that trains from scratch on every call (flagged);
--   a peek hidden under the causality check's tolerance (an extra column of huge logits);
--   a validation batch that leaves part of the task's validation tokens out;
--   and a second round: a peek across rows (T = 1, or the next row's first token), memory in the
--   sandbox's require cache, in C-side state (the thread count) and in a file; a third: validation
--   tokens read back from freed host memory through speedrun.empty in setup; and the collector's
--   settings (process-wide state; a stopped collector moves garbage off the clock); a fourth: the
--   remembering eval's memory in a gradient swapped for a fresh one, in requires_grad flags, in the
--   payloads of NaNs; a fifth: the tools' recipe loader of speedrun.util (the process's own globals,
--   debug among them: the targets read off the harness's stack), a memory in file handles opened in
--   setup (their contents, their positions) and in where suspended coroutines stand; a sixth: where
--   string.gmatch iterators stand, and the removed keys of an empty table (next tells them apart).
-- docs/harness.md "Threat model".
local T = require "speedrun.testing"
local json = require "speedrun.json"

local C = dofile("harness/cheats_fixture.lua")("cheats_sandbox")
local workspace, refused, score, read = C.workspace, C.refused, C.score, C.read
local PEEK = {["cheat_peekbase.lua"] = "cheat_peekbase"}   -- the peeking cheats' shared skeleton

T.case("a harness module under another name (speedrun..harness.supervise) -> a violation; honest control passes", function()
  C.honest_passes()
  local s = refused(workspace("alias", "cheat_alias"), "rejected", "require 'speedrun%.%.harness%.supervise'")
  for _, r in ipairs(s.runs) do T.eq(r.status, "rejected", "run " .. r.seed) end
end)

T.case("a workspace module reached as speedrun.x through ./?.lua -> a violation, the clock untouched", function()
  local ws = workspace("pathescape", "cheat_pathescape", {["speedrun/cheat_clock.lua"] = "cheat_pathescape_mod"})
  refused(ws, "rejected", "require 'speedrun%.cheat_clock'")
end)

T.case("library modules outside the recipes' list (json, data, tokenizer, process) -> violations", function()
  for _, m in ipairs {"speedrun.json", "speedrun.data", "speedrun.tokenizer", "speedrun.process", "speedrun.fuse"} do
    refused(C.inline("lib-" .. m, ("local m = require %q\nreturn dofile('good.lua')\n"):format(m)), "rejected",
            "require '" .. m:gsub("%.", "%%.") .. "'")
  end
end)

T.case("the tensors' metatable is out of reach: no __gc or __index hook off the clock", function()
  for _, name in ipairs {"cheat_tensorgc", "cheat_indexhook"} do
    local _, text = refused(workspace(name, name), "lua_error", "the tensors' metatable is out of reach: speedrun%.Tensor")
    T.ok(not text:find("[cheat] hook trained", 1, true) and not text:find("trained in the __index hook", 1, true), text)
  end
end)

T.case("state for eval in a library table -> rejected (the library's tables are read-only)", function()
  refused(workspace("evalhidden", "cheat_evalhidden"), "rejected", "changed the speedrun library %(speedrun%.__hidden")
end)

T.case("state in a coroutine's locals, a memory of eval's answers -> rejected (eval changed the recipe's state)", function()
  refused(workspace("evalcoroutine", "cheat_evalcoroutine"), "rejected", "resuming a coroutine made outside this eval call")
  refused(workspace("memopeek", "cheat_memopeek", {["cheat_memobase.lua"] = "cheat_memobase"}), "rejected",
          "eval changed the recipe's state")
end)

-- rounds 4-6: the remembering eval (cheat_memobase) with its memory where the picture did not look,
-- and the tools' loader escape: {workspace, recipe, extra files, the failure's message}
local MEMO = {["cheat_memobase.lua"] = "cheat_memobase"}
local HIDDEN = {
  {"gradswap", "cheat_gradswap", MEMO, "setting a tensor's grad"},              -- round 4
  {"rgbits", "cheat_rgbits", MEMO, "changing requires_grad"},
  {"nanpay", "cheat_nanpay", MEMO, "eval changed the recipe's state"},
  {"utilesc", "cheat_utilesc", {["cheat_utilesc_debug.lua"] = "cheat_utilesc_debug"}, "require 'speedrun%.util'"},  -- 5
  {"fhandle", "cheat_fhandle", MEMO, "a file handle made outside this eval call"},
  {"seekpos", "cheat_seekpos", MEMO, "a file handle made outside this eval call"},
  {"copc", "cheat_copc", MEMO, "resuming a coroutine made outside this eval call"},
  {"gmatch", "cheat_gmatch", MEMO, "a string.gmatch iterator made outside this eval call"},  -- round 6
  {"deadkey", "cheat_deadkey", MEMO, "next from a key the table does not hold"},
  {"bigint", "cheat_bigint", {}, "eval changed the recipe's state"},   -- the review of rounds 4 and 5
  {"fhclose", "cheat_fhclose", {}, "a file handle made outside this eval call"},
}
T.case("rounds 4-6: memories in a swapped gradient, requires_grad flags, NaN payloads, file handles, coroutines, "
       .. "gmatch iterators, removed keys; the tools' loader escape -> rejected", function()
  for _, c in ipairs(HIDDEN) do refused(workspace(c[1], c[2], c[3]), "rejected", c[4]) end
end)

T.case("round 7: training in the untimed setup or while the recipe loads -> rejected; work there -> flagged", function()
  refused(workspace("setuptrain", "cheat_setuptrain"), "rejected", "backward inside setup")
  refused(C.inline("loadtrain", "local r = dofile('good.lua')\nlocal sr = require 'speedrun'\n"
    .. "local w = sr.randn(4):requires_grad_()\npcall(function() sr.F.sum(w * w):backward() end)\nreturn r\n"),
    "rejected", "backward inside the recipe's loading")
  C.flagged(workspace("setupwork", "cheat_setupwork"), "work in the untimed setup")
end)

T.case("round 8: training in an __index of the recipe table (read off the clock) -> refused; work at load -> flagged", function()
  refused(workspace("idxtrain", "cheat_idxtrain"), "lua_error", "the recipe table has a metatable")
  C.flagged(workspace("loadwork", "cheat_loadwork"), "work in the untimed setup")
end)

T.case("round 9: work in an __index of recipe.schedule_keys or recipe.name (read off every clock) -> refused", function()
  refused(workspace("schedkeys", "cheat_schedkeys"), "lua_error", "recipe%.schedule_keys has a metatable")
  refused(workspace("namehook", "cheat_namehook"), "lua_error", "recipe%.name must be a string")
end)

T.case("round 10: a peek at a quarter of the positions, one one-row chunk (one probe a run before) -> rejected", function()
  refused(workspace("ppeek", "cheat_ppeek"), "rejected", "non%-causal")
end)

T.case("round 11: bf16 logits placed so each token's bf16-rounded loss rounds down -> no lower than honest f32 logits", function()
  local function val_loss(name, text)
    local ws = C.inline(name, text)
    local rc, out = C.speedrun("train " .. C.sh(ws .. "/recipe.lua") .. " --scale micro --restricted --seed 1 --quiet --out "
                               .. C.sh(C.tmp .. "/train-" .. name) .. C.RUN)
    T.eq(rc, 0, out)
    return json.decode(read(C.tmp .. "/train-" .. name .. "/results.json")).metrics.val_loss
  end
  local honest = val_loss("f32logprobs", "local r = dofile('good.lua')\nlocal F = require('speedrun').F\n"
    .. "function r.eval(ctx, x) return F.log_softmax(ctx.model(x), -1) end\nreturn r\n")
  local cheat = val_loss("bf16round", read("harness/recipes/cheat_bf16round.lua"))
  T.ok(cheat >= honest - 2e-4, ("the rounding cheat %.6f against honest %.6f (it gained 0.0019 when per-token losses "
                                .. "were bf16)"):format(cheat, honest))
end)

T.case("round 7: seeds made alike (a spread of ~0) pass just under the target alone; with the record's spread, not", function()
  local ws = workspace("seedfix", "cheat_seedfix")
  local _, text, first = score(ws)   -- where its runs land
  local m = first.summary.val_loss.mean
  T.ok(first.summary.val_loss.std < 1e-4, "seeds alike: std " .. tostring(first.summary.val_loss.std) .. "\n" .. text)
  -- the target 0.002 above them; the target record's calibrated spread 0.02 over 3 runs, or unknown
  local function calib(name, std)
    local rec = {}
    for k, v in pairs(C.REC2) do rec[k] = v end
    rec.target_val_loss, rec.val_loss_std = m + 0.002, std
    return C.calibration(name, {record_01 = C.REC1, record_02 = rec})
  end
  local _, t1, s1 = score(ws, nil, calib("calib-nostd", nil))
  T.ok(s1, t1)
  T.eq(s1.verdict, "pass", "without the record's spread the cheat passes 0.002 under the target\n" .. t1)
  local rc2, t2, s2 = score(ws, nil, calib("calib-std", 0.02))
  T.eq(rc2, 1, t2)
  T.eq(s2.verdict, "fail", t2)
  T.ok(s2.summary.ttest.spread and s2.summary.ttest.spread.used == 0.02 and s2.summary.ttest.df == 2, t2)
end)

T.case("honest: files and coroutines made and used within one eval call, print in eval -> pass", function()
  local ws = C.inline("evalio-fine", [[
local r = dofile("good.lua")
local eval = r.eval
function r.eval(ctx, x)
  local f = assert(io.open("good.lua", "r")); local _ = f:read("l"); f:seek("set", 0); f:close()
  for _ in io.lines("good.lua") do end
  local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1); return b * 2 end)
  assert(co(1) == 2 and co(3) == 6)
  local n, t = 0, {a = 1, b = 2, c = 3}
  for w in ("x y z"):gmatch("%a") do n = n + #w end
  for k in pairs(t) do t[k] = t[k] + 1 end   -- values changed while traversing: allowed
  for _, v in next, t do n = n + v end
  assert(n == 12)
  for k in pairs(t) do t[k] = nil end          -- a table cleared while traversing: allowed
  assert(next(t) == nil)
  print("eval ok")
  io.write("eval wrote\n"); io.stdout:write("to stdout\n"); io.stderr:write("to stderr\n"); io.stdout:flush()
  return eval(ctx, x)
end
return r
]])
  C.passes(ws)
end)

T.case("the process's globals once the sandbox is installed: no debug; code loaded as text, files through the checks", function()
  local ws = workspace("globals", "good")
  C.write(ws .. "/probe.lua", "return 42\n")
  local script = C.tmp .. "/install_probe.lua"
  C.write(script, ([[
local sandbox = require "speedrun.harness.sandbox"
local why = {}
sandbox.install {workspace = %q, out = %q, deny = {}, cwd = %q, on_violation = function(w) why[#why + 1] = w end}
print("debug", debug == nil and "gone" or "there")
print("binary", select(2, load(string.dump(function() end))) and "refused" or "loaded")
print("globals", load("return type(string)")())
print("workspace", loadfile(%q)())
local loaded_outside = pcall(function() return loadfile("/etc/hostname")() end)
print("outside", not loaded_outside and #why > 0 and "violation" or "no violation")
]]):format(ws, C.tmp, ws, ws .. "/probe.lua"))
  local _, text = C.speedrun("run " .. C.sh(script))
  T.ok(text:find("debug\tgone", 1, true), text)
  T.ok(text:find("binary\trefused", 1, true), text)
  T.ok(text:find("globals\ttable", 1, true), "load without an environment keeps the globals\n" .. text)
  T.ok(text:find("workspace\t42", 1, true), text)
  T.ok(text:find("outside\tviolation", 1, true), text)
end)

T.case("Lua's generator and the heap's size inside eval (process-wide state) -> rejected; in training fine", function()
  for what, call in pairs {["a random draw"] = "math.random(0)", ["seeding the random generator"] = "math.randomseed(7)",
                           ["reading memory statistics"] = "collectgarbage('count')"} do
    refused(C.inline("luastate-" .. what:gsub(" ", "-"), ("local r = dofile('good.lua')\nlocal eval = r.eval\n"
      .. "function r.eval(ctx, x) local _ = %s; return eval(ctx, x) end\nreturn r\n"):format(call)), "rejected", what .. " inside eval")
  end
  C.passes(C.inline("luastate-train", "local r = dofile('good.lua')\nlocal step = r.train_step\nmath.randomseed(3)\n"
    .. "function r.train_step(...) local _ = math.random(10) + collectgarbage('count'); return step(...) end\nreturn r\n"))
end)

T.case("an eval that trains on every call (stateless, causal) -> flagged by its time per token", function()
  local rc, text, s = score(workspace("evalrecompute", "cheat_evalrecompute", {["cheat_evalhidden.lua"] = "cheat_evalhidden"}))
  T.eq(rc, 1, text)
  T.eq(s.verdict, "flagged", text)
  T.ok(text:find("the final validation spent %d+x the training's time per token"), text)
end)

T.case("a peek inside the logits' tolerance (an extra column of -1e5) -> rejected by the tokens' losses", function()
  local s = refused(workspace("amaxpeek", "cheat_amaxpeek"), "rejected", "non%-causal")
  local r = s.runs[1]
  T.ok(r.failure.message:find("earlier tokens' losses by up to"), r.failure.message)
end)

T.case("a validation batch that does not divide the task's validation tokens -> a contract error", function()
  refused(workspace("valbatch", "cheat_valbatch"), "lua_error", "does not divide the 512 validation tokens")
end)

T.case("second round: a peek across rows (T = 1; the next row's first token) -> rejected (non-causal)", function()
  refused(workspace("t1peek", "cheat_t1peek", PEEK), "rejected", "non%-causal")
  refused(workspace("rowpeek", "cheat_rowpeek", PEEK), "rejected", "non%-causal")
end)

T.case("second round: memory in the sandbox's require cache -> rejected (eval changed the recipe's state)", function()
  refused(workspace("hiddenmem", "cheat_hiddenmem", PEEK), "rejected", "eval changed the recipe's state")
end)

T.case("second round: memory in C-side state (the thread count: the scorer's) or a file (refused inside eval)", function()
  refused(workspace("threadmem", "cheat_threadmem", PEEK), "rejected", "speedrun%.set_num_threads")
  refused(workspace("filemem", "cheat_filemem", PEEK), "rejected", "writing a file inside eval")
end)

T.case("third round: validation tokens read from freed host memory through speedrun.empty -> zeros, no pass", function()
  local rc, text, s = score(workspace("heappeek", "cheat_heappeek"))
  T.eq(rc, 1, text)
  T.ok(s.verdict ~= "pass" and s.verdict ~= "flagged", "verdict " .. tostring(s.verdict) .. "\n" .. text)
  T.ok(s.summary.val_loss.mean > 3.0, "no tokens recovered: the loss of a uniform guess\n" .. text)
end)

T.case("the collector's settings (stop, its mode and parameters) -> violations; collect and count are fine", function()
  for _, opt in ipairs {"stop", "incremental", "setpause"} do
    refused(C.inline("gc-" .. opt, ("collectgarbage(%q)\ncollectgarbage('collect'); collectgarbage('count')\n"
      .. "return dofile('good.lua')\n"):format(opt)), "rejected", 'collectgarbage%("' .. opt .. '"%)')
  end
  C.passes(C.inline("gc-fine", "collectgarbage(); collectgarbage('collect'); collectgarbage('step')\n"
    .. "assert(collectgarbage('count') > 0 and collectgarbage('isrunning'))\nreturn dofile('good.lua')\n"))
end)

T.case("honest: a custom op registered with speedrun.kernel.op (the library's registry of ops) passes", function()
  C.passes(workspace("kernelop", "kernelop"))
end)

T.case("docs/harness.md's threat model names this test and every cheat recipe it scores", function()
  local tm = read("../docs/harness.md"):match("\n## Threat model\n(.*)$")
  T.ok(tm and tm:find("test_cheats_sandbox.lua", 1, true), "the test named in the threat model")
  for _, name in ipairs {"cheat_alias", "cheat_pathescape", "cheat_tensorgc", "cheat_indexhook", "cheat_evalhidden",
                         "cheat_evalcoroutine", "cheat_memopeek", "cheat_evalrecompute", "cheat_amaxpeek", "cheat_valbatch",
                         "cheat_t1peek", "cheat_rowpeek", "cheat_hiddenmem", "cheat_threadmem", "cheat_filemem",
                         "cheat_heappeek", "cheat_gradswap", "cheat_rgbits", "cheat_nanpay", "cheat_utilesc",
                         "cheat_fhandle", "cheat_seekpos", "cheat_copc", "cheat_gmatch", "cheat_deadkey",
                         "cheat_setuptrain", "cheat_setupwork", "cheat_seedfix", "cheat_idxtrain", "cheat_loadwork",
                         "cheat_schedkeys", "cheat_namehook", "cheat_ppeek",
                         "cheat_bf16round", "cheat_bigint", "cheat_fhclose"} do
    T.ok(read("harness/recipes/" .. name .. ".lua"), name .. " exists")
    T.ok(tm:find(name, 1, true), name .. " named in the threat model")
  end
end)

T.done()
