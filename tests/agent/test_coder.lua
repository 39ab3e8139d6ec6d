-- tests/agent/test_coder.lua: speedrun.agent.coder (docs/agent.md, "The coder"): the prompt's
-- structure, the SEARCH/REPLACE parse (fences, CRLF, several blocks and files, malformed blocks,
-- new files), apply (exact match, closest lines on a mismatch, ambiguity, paths refused, all or
-- nothing), run with a scripted chat (reflection, giving up, no edit, chat errors) and the oracle:
-- blocks_from_diff turns record 1's recipe into record 2's byte for byte.
local T = require "speedrun.testing"
local coder = require "speedrun.agent.coder"
local util = require "speedrun.util"

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent-coder"
local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp))

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end
local read = util.read_file

-- a fresh workspace directory holding the given files
local n_dirs = 0
local function workspace(files)
  n_dirs = n_dirs + 1
  local dir = tmp .. "/ws" .. n_dirs
  os.execute("mkdir -p " .. sh(dir))
  for name, text in pairs(files or {}) do write(dir .. "/" .. name, text) end
  return dir
end

local function block(path, search, replace)
  return coder.format_block(path, search, replace)
end

local function has(s, sub, msg)
  T.ok(type(s) == "string" and s:find(sub, 1, true), (msg or "text") .. ": no '" .. sub .. "' in:\n" .. tostring(s))
end

local function kinds(problems)
  local k = {}
  for _, p in ipairs(problems or {}) do k[#k + 1] = p.kind end
  return table.concat(k, ",")
end

local RECIPE = "local lr = 1.5e-3\nlocal steps = 100\n\nlocal function step(x)\n  return x * lr\nend\n\nreturn {step = step}\n"

---------------------------------------------------------------------------------------- prompt
T.case("prompt: system role and rules, user sections in the benchmark's order", function()
  local m = coder.prompt{task = "Reach val_loss 3.28 faster.", rules = "Keep every log line unchanged.",
    files = {["recipe.lua"] = RECIPE, ["kernels/k.cu"] = "__global__ void k() {}\n"},
    hint = "Use rotary embeddings.", instruction = "improve",
    bug_history = {{summary = "NaN at step 10", error = "lua_error: attempt to index nil", version = "3", results = {val_loss = "nil"}}}}
  T.eq(#m, 2, "two messages")
  T.eq(m[1].role, "system"); T.eq(m[2].role, "user")
  for _, s in ipairs({"speedrun", "Lua", "recipe.lua", ".cu", "host owns the training data, the clock and the validation",
                      "Keep every log line unchanged.", "target"}) do has(m[1].content, s, "system") end
  local u = m[2].content
  local order = {"# Task description\nReach val_loss 3.28 faster.", "# Current files", "recipe.lua\n```lua\nlocal lr = 1.5e-3",
                 "kernels/k.cu\n```cuda\n__global__", "# Ideas", "Use rotary embeddings.", "# Bug history", "<version_log>",
                 "Version: 3", "Has bugs? Yes", "Error: lua_error: attempt to index nil", "Outcome summary: NaN at step 10",
                 "</version_log>", "# Instruction", "Implement the ideas above", "# Edit format", "<<<<<<< SEARCH", "=======",
                 ">>>>>>> REPLACE"}
  local at = 0
  for _, s in ipairs(order) do
    local a = u:find(s, at + 1, true)
    T.ok(a, "user message lacks, or has out of order: " .. s)
    at = a
  end
  T.ok(u:find("recipe.lua", 1, true) < u:find("kernels/k.cu", 1, true), "recipe.lua is shown first")
end)

T.case("prompt: no hint asks for a plan; debug and verbatim instructions; no empty sections", function()
  local m = coder.prompt{task = "t", files = {["recipe.lua"] = RECIPE}, instruction = "draft"}
  local u = m[2].content
  T.ok(not u:find("# Ideas", 1, true), "no ideas section without a hint")
  T.ok(not u:find("# Bug history", 1, true), "no bug history section without one")
  has(u, coder.INSTRUCTIONS.draft); has(u, "First give a short plan")
  has(coder.prompt{task = "t", files = {}, instruction = "debug"}[2].content, coder.INSTRUCTIONS.debug)
  has(coder.prompt{task = "t", files = {}, instruction = "Halve the batch."}[2].content, "# Instruction\nHalve the batch.")
  -- a file holding a fence is shown inside a longer one
  local f = coder.prompt{task = "t", files = {["recipe.lua"] = "-- ```lua\nreturn {}\n"}}[2].content
  has(f, "recipe.lua\n````lua\n-- ```lua\nreturn {}\n````")
end)

----------------------------------------------------------------------------------------- parse
T.case("parse: one fenced block, text around it", function()
  local text = "I will raise the learning rate.\n\nrecipe.lua\n```lua\n<<<<<<< SEARCH\nlocal lr = 1.5e-3\n=======\nlocal lr = 1.8e-3\n>>>>>>> REPLACE\n```\n\nThat is all."
  local e, p = coder.parse(text)
  T.eq(#e, 1); T.eq(#p, 0)
  T.eq(e[1].path, "recipe.lua"); T.eq(e[1].search, "local lr = 1.5e-3\n"); T.eq(e[1].replace, "local lr = 1.8e-3\n")
end)

T.case("parse: no fences, CRLF, path inside the fence, decorated paths", function()
  local e, p = coder.parse("recipe.lua\r\n<<<<<<< SEARCH\r\na\r\nb\r\n=======\r\nc\r\n>>>>>>> REPLACE\r\n")
  T.eq(#e, 1); T.eq(#p, 0); T.eq(e[1].search, "a\nb\n"); T.eq(e[1].replace, "c\n")
  e = coder.parse("```lua\nmodel.lua\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```")
  T.eq(e[1].path, "model.lua")
  for _, deco in ipairs({"**recipe.lua**", "`kernels/add.cu`", "### recipe.lua:", "recipe.lua:"}) do
    e = coder.parse(deco .. "\n```lua\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```")
    T.eq(#e, 1, deco)
    T.eq(e[1].path, (deco:find("add", 1, true) and "kernels/add.cu" or "recipe.lua"), deco)
  end
end)

T.case("parse: several blocks per file, several files, a path carried over, empty SEARCH and REPLACE", function()
  local text = table.concat({
    "First:", block("recipe.lua", "a\n", "b\n"),
    "Then, in the same file:", "```lua", "<<<<<<< SEARCH", "c", "=======", ">>>>>>> REPLACE", "```",
    block("kernels/new.cu", "", "__global__ void k() {}\n"),
    block("recipe.lua", "d\ne\n", "f\n")}, "\n")
  local e, p = coder.parse(text)
  T.eq(#p, 0, "problems: " .. table.concat(p, "; "))
  T.eq(#e, 4)
  T.eq(e[1].path, "recipe.lua"); T.eq(e[2].path, "recipe.lua"); T.eq(e[2].search, "c\n"); T.eq(e[2].replace, "")
  T.eq(e[3].path, "kernels/new.cu"); T.eq(e[3].search, ""); T.eq(e[3].replace, "__global__ void k() {}\n")
  T.eq(e[4].path, "recipe.lua"); T.eq(e[4].search, "d\ne\n")
end)

T.case("parse: malformed blocks are skipped and reported, good ones kept", function()
  local text = table.concat({
    "recipe.lua", "<<<<<<< SEARCH", "no divider here",            -- 1-3: a new SEARCH before its =======
    "recipe.lua", "<<<<<<< SEARCH", "x", "=======", "y", ">>>>>>> REPLACE",   -- 4-9: good
    ">>>>>>> REPLACE",                                             -- 10: stray
    "other.lua", "<<<<<<< SEARCH", "p", "=======", "q"}, "\n")      -- 11-15: never closed
  local e, p = coder.parse(text)
  T.eq(#e, 1); T.eq(e[1].search, "x\n"); T.eq(e[1].replace, "y\n"); T.eq(e[1].line, 5)
  T.eq(#p, 3, "problems: " .. table.concat(p, "; "))
  has(p[1], "reply line 2"); has(p[2], "reply line 10"); has(p[3], "reply line 12"); has(p[3], ">>>>>>> REPLACE")
  -- no path anywhere: a problem, unless a default is given
  local e2, p2 = coder.parse("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n")
  T.eq(#e2, 0); T.eq(#p2, 1); has(p2[1], "without a file path")
  e2 = coder.parse("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "recipe.lua")
  T.eq(e2[1].path, "recipe.lua")
  local e3, p3 = coder.parse("Nothing to change here.")
  T.eq(#e3, 0); T.eq(#p3, 0)
end)

----------------------------------------------------------------------------------------- apply
T.case("apply: exact edits in order, whole lines only", function()
  local dir = workspace{["recipe.lua"] = RECIPE}
  local ok, changed = coder.apply(dir, {
    {path = "recipe.lua", search = "local lr = 1.5e-3\n", replace = "local lr = 1.8e-3\n"},
    {path = "./recipe.lua", search = "local lr = 1.8e-3\nlocal steps = 100\n", replace = "local lr = 1.8e-3\nlocal steps = 90\n"}})
  T.ok(ok, "applied: " .. kinds(changed))
  T.eq(changed[1], "recipe.lua")
  T.eq(read(dir .. "/recipe.lua"), RECIPE:gsub("1.5e%-3", "1.8e-3"):gsub("= 100", "= 90"))
  -- "ocal lr" occurs inside a line only: not a match
  local ok2, p = coder.apply(dir, {{path = "recipe.lua", search = "ocal lr = 1.8e-3\n", replace = ""}})
  T.eq(ok2, nil); T.eq(kinds(p), "no_match")
end)

T.case("apply: no match names the closest lines of the file", function()
  local dir = workspace{["recipe.lua"] = RECIPE}
  local ok, p = coder.apply(dir, {{path = "recipe.lua", search = "local function step(x)\n    return x * lr\nend\n", replace = "-- gone\n"}})
  T.eq(ok, nil); T.eq(kinds(p), "no_match")
  T.eq(p[1].edit, 1); T.eq(p[1].closest.first, 4); T.eq(p[1].closest.last, 6)
  T.eq(p[1].closest.text, "local function step(x)\n  return x * lr\nend\n")
  has(p[1].detail, "lines 4-6"); has(p[1].detail, "  return x * lr")
  T.eq(read(dir .. "/recipe.lua"), RECIPE, "file untouched")
  -- a file that does not exist, and an empty SEARCH over a non-empty file
  ok, p = coder.apply(dir, {{path = "missing.lua", search = "x\n", replace = "y\n"}})
  T.eq(kinds(p), "no_match"); has(p[1].detail, "does not exist")
  ok, p = coder.apply(dir, {{path = "recipe.lua", search = "", replace = "return {}\n"}})
  T.eq(kinds(p), "no_match"); has(p[1].detail, "exists and is not empty")
  T.eq(read(dir .. "/recipe.lua"), RECIPE, "file untouched")
end)

T.case("apply: a SEARCH occurring twice is ambiguous", function()
  local dir = workspace{["recipe.lua"] = "x = 1\ny = 2\nz = 3\nx = 1\ny = 2\n"}
  local ok, p = coder.apply(dir, {{path = "recipe.lua", search = "x = 1\ny = 2\n", replace = "x = 5\n"}})
  T.eq(ok, nil); T.eq(kinds(p), "ambiguous")
  T.eq(p[1].lines[1], 1); T.eq(p[1].lines[2], 4)
  has(p[1].detail, "2 times")
  T.eq(read(dir .. "/recipe.lua"), "x = 1\ny = 2\nz = 3\nx = 1\ny = 2\n")
  -- one more line makes it unique
  T.ok(coder.apply(dir, {{path = "recipe.lua", search = "z = 3\nx = 1\n", replace = "z = 3\nx = 5\n"}}))
  T.eq(read(dir .. "/recipe.lua"), "x = 1\ny = 2\nz = 3\nx = 5\ny = 2\n")
end)

T.case("apply: paths outside the workspace and other files are refused", function()
  local outside = tmp .. "/outside"
  os.execute("mkdir -p " .. sh(outside))
  write(outside .. "/victim.lua", "secret = 1\n")
  local dir = workspace{["recipe.lua"] = RECIPE}
  os.execute("ln -s " .. sh(outside) .. " " .. sh(dir .. "/link"))
  os.execute("ln -s " .. sh(outside .. "/victim.lua") .. " " .. sh(dir .. "/victim.lua"))
  os.execute("mkdir -p " .. sh(dir .. "/sub") .. " && ln -s ../recipe.lua " .. sh(dir .. "/sub/inner.lua"))
  local cases = {
    {outside .. "/victim.lua", "outside"}, {"../outside/victim.lua", "outside"}, {"sub/../../outside/victim.lua", "outside"},
    {"link/victim.lua", "outside"}, {"link/new.lua", "outside"}, {"victim.lua", "outside"},
    {"sub/inner.lua", "bad_path"}, {"notes.txt", "bad_path"}, {"recipe.py", "bad_path"}, {"sub/", "bad_path"},
    {"", "bad_path"}, {"re cipe.lua", "bad_path"}, {"sub", "bad_path"}, {"~/x.lua", "outside"}}
  for _, c in ipairs(cases) do
    for _, search in ipairs({"secret = 1\n", ""}) do
      local ok, p = coder.apply(dir, {{path = c[1], search = search, replace = "secret = 2\n"}})
      T.eq(ok, nil, c[1])
      T.eq(kinds(p), c[2], c[1])
      T.eq(p[1].path, c[1])
    end
  end
  T.eq(read(outside .. "/victim.lua"), "secret = 1\n", "the file outside is untouched")
  T.eq(read(outside .. "/new.lua"), nil, "nothing created outside")
  T.eq(read(dir .. "/recipe.lua"), RECIPE)
end)

T.case("apply: all or nothing over several files; new files in new folders", function()
  local dir = workspace{["recipe.lua"] = RECIPE, ["model.lua"] = "return 1\n"}
  local good = {{path = "recipe.lua", search = "local steps = 100\n", replace = "local steps = 50\n"},
                {path = "kernels/add.cu", search = "", replace = "__global__ void add() {}\n"},
                {path = "model.lua", search = "return 1\n", replace = "return 2\n"}}
  local bad = {path = "model.lua", search = "return 3\n", replace = "return 4\n"}
  local ok, p = coder.apply(dir, {good[1], good[2], bad, good[3]})
  T.eq(ok, nil); T.eq(kinds(p), "no_match"); T.eq(p[1].edit, 3)
  T.eq(read(dir .. "/recipe.lua"), RECIPE); T.eq(read(dir .. "/model.lua"), "return 1\n")
  T.eq(read(dir .. "/kernels/add.cu"), nil, "no file created")
  local listing = io.popen("ls -A " .. sh(dir)):read("a")
  T.eq(listing, "model.lua\nrecipe.lua\n", "no temporary file, no folder left")
  -- a path problem refuses the whole set too
  ok, p = coder.apply(dir, {good[1], {path = "../x.lua", search = "", replace = "x\n"}})
  T.eq(kinds(p), "outside"); T.eq(read(dir .. "/recipe.lua"), RECIPE)
  ok = coder.apply(dir, good)
  T.ok(ok, "the good edits apply")
  T.eq(read(dir .. "/kernels/add.cu"), "__global__ void add() {}\n")
  T.eq(read(dir .. "/model.lua"), "return 2\n")
  T.eq(io.popen("ls -A " .. sh(dir)):read("a"), "kernels\nmodel.lua\nrecipe.lua\n")
end)

T.case("apply: a file without a final newline keeps none", function()
  local dir = workspace{["recipe.lua"] = "a\nb"}
  T.ok(coder.apply(dir, {{path = "recipe.lua", search = "b\n", replace = "c\n"}}))
  T.eq(read(dir .. "/recipe.lua"), "a\nc")
end)

------------------------------------------------------------------------------------------- run
-- a scripted chat: replies[i] answers call i (a string, a table, or a function of the messages)
local function script(replies)
  local calls = {}
  return function(messages)
    local copy = {}
    for i, m in ipairs(messages) do copy[i] = {role = m.role, content = m.content} end
    calls[#calls + 1] = copy
    local r = replies[math.min(#calls, #replies)]
    if type(r) == "function" then return r(messages) end
    return r
  end, calls
end

local A_GOOD = block("recipe.lua", "local steps = 100\n", "local steps = 100\nlocal warmup = 10\n")
local B_BAD = block("recipe.lua", "local function step(x)\n    return x * lr\nend\n", "local function step(x)\n  return x * lr * 2\nend\n")
local B_FIXED = block("recipe.lua", "local function step(x)\n  return x * lr\nend\n", "local function step(x)\n  return x * lr * 2\nend\n")
local WANT = RECIPE:gsub("local steps = 100\n", "local steps = 100\nlocal warmup = 10\n"):gsub("x %* lr\n", "x * lr * 2\n")

T.case("run: a mismatch fixed by reflection on the 2nd round; the matched block is kept", function()
  for _, second in ipairs({B_FIXED, A_GOOD .. "\n" .. B_FIXED}) do   -- only the fix, or everything again
    local dir = workspace{["recipe.lua"] = RECIPE}
    local chat, calls = script({"Two changes:\n" .. A_GOOD .. "\n" .. B_BAD, second})
    local r = coder.run{chat = chat, dir = dir, task = "go faster", instruction = "improve"}
    T.ok(r.ok, "run ok: " .. tostring(r.error))
    T.eq(r.rounds, 2); T.eq(#calls, 2); T.eq(#r.replies, 2); T.eq(r.error, nil)
    T.eq(read(dir .. "/recipe.lua"), WANT, "both changes, each once")
    T.eq(#r.edits, 2)
    local fb = calls[2][#calls[2]]
    T.eq(fb.role, "user"); T.eq(calls[2][#calls[2] - 1].role, "assistant")
    has(fb.content, "1 of your SEARCH/REPLACE blocks failed"); has(fb.content, "The other 1 blocks matched and are kept")
    has(fb.content, "    return x * lr")                                   -- the failed SEARCH
    -- the closest lines, in the file as the kept block leaves it (one line inserted above)
    has(fb.content, "lines 5-7"); has(fb.content, "local function step(x)\n  return x * lr\nend")
    has(calls[1][1].content, "speedrun", "system prompt")
    has(calls[1][2].content, RECIPE, "the prompt shows the directory's recipe")
  end
end)

T.case("run: gives up after max_reflections rounds, nothing written", function()
  local dir = workspace{["recipe.lua"] = RECIPE}
  local chat, calls = script({B_BAD})
  local r = coder.run{chat = chat, dir = dir, task = "t"}
  T.eq(r.ok, false); T.eq(r.rounds, 6); T.eq(#calls, 6); T.eq(#r.replies, 6)
  has(r.error, "no_match"); T.eq(#r.edits, 0); T.eq(kinds(r.problems), "no_match")
  T.eq(read(dir .. "/recipe.lua"), RECIPE)
  chat, calls = script({B_BAD})
  r = coder.run{chat = chat, dir = dir, task = "t", max_reflections = 2}
  T.eq(r.rounds, 3); T.eq(#calls, 3)
end)

T.case("run: a reply with no edit is asked again, and is an error after the rounds", function()
  local dir = workspace{["recipe.lua"] = RECIPE}
  local chat, calls = script({"I think the recipe is fine as it is."})
  local r = coder.run{chat = chat, dir = dir, task = "t"}
  T.eq(r.ok, false); T.eq(r.rounds, 6); has(r.error, "no edit")
  has(calls[2][#calls[2]].content, "no usable SEARCH/REPLACE block")
  -- prose first, then blocks: fine on round 2
  chat = script({"Let me think.", {content = A_GOOD, usage = {prompt_tokens = 10, completion_tokens = 5, total_tokens = 15}}})
  r = coder.run{chat = chat, dir = dir, task = "t"}
  T.ok(r.ok, tostring(r.error)); T.eq(r.rounds, 2); T.eq(r.usage.total_tokens, 15)
  -- a malformed block next to a good one: nothing written, the malformed one reported
  dir = workspace{["recipe.lua"] = RECIPE}
  chat, calls = script({A_GOOD .. "\nrecipe.lua\n<<<<<<< SEARCH\nlocal lr = 1.5e-3\n", B_FIXED})
  r = coder.run{chat = chat, dir = dir, task = "t"}
  T.ok(r.ok, tostring(r.error)); T.eq(r.rounds, 2)
  has(calls[2][#calls[2]].content, "malformed")
  T.eq(read(dir .. "/recipe.lua"), WANT)
end)

T.case("run: chat errors end the run with the error; refused paths are not retried", function()
  local dir = workspace{["recipe.lua"] = RECIPE}
  local chat, calls = script({function() return nil, "llm: http 500: upstream down" end})
  local r = coder.run{chat = chat, dir = dir, task = "t"}
  T.eq(r.ok, false); T.eq(r.rounds, 1); T.eq(#calls, 1); has(r.error, "llm: http 500: upstream down")
  chat = script({A_GOOD, function() error("socket closed") end})
  r = coder.run{chat = function(m) return chat(m) end, dir = dir, task = "t"}
  T.ok(r.ok, "a first good reply needs no second call")
  chat, calls = script({B_BAD, function() error("socket closed") end})
  r = coder.run{chat = chat, dir = workspace{["recipe.lua"] = RECIPE}, task = "t"}
  T.eq(r.ok, false); T.eq(r.rounds, 2); has(r.error, "socket closed")
  chat, calls = script({block("../escape.lua", "", "x = 1\n")})
  r = coder.run{chat = chat, dir = dir, task = "t"}
  T.eq(r.ok, false); T.eq(#calls, 1); has(r.error, "refused: outside")
  T.eq(read(tmp .. "/escape.lua"), nil)
end)

---------------------------------------------------------------------------------------- oracle
local function oracle(old, new, path)
  local dir = workspace{[path] = old}
  local reply = coder.blocks_from_diff(old, new, path)
  local edits, p = coder.parse(reply)
  T.eq(#p, 0, "the oracle's reply parses cleanly")
  local ok, probs = coder.apply(dir, edits)
  T.ok(ok, "the oracle's edits apply: " .. kinds(probs) .. " " .. tostring(probs and probs[1] and probs[1].detail))
  return read(dir .. "/" .. path), #edits
end

T.case("oracle: record 1's recipe becomes record 2's byte for byte (and 2 -> 3, 3 -> 1)", function()
  local r = {}
  for i = 1, 3 do r[i] = assert(read(("../tasks/record_%02d/recipe.lua"):format(i))) end
  local got, n = oracle(r[1], r[2], "recipe.lua")
  T.ok(got == r[2], "record 2's recipe, byte for byte")
  T.ok(n > 1, "several blocks")
  T.ok(oracle(r[2], r[3], "recipe.lua") == r[3], "record 3's recipe")
  T.ok(oracle(r[3], r[1], "recipe.lua") == r[1], "back to record 1's recipe")
  -- through run, as the loop's scripted model
  local dir = workspace{["recipe.lua"] = r[1]}
  local chat = script({coder.blocks_from_diff(r[1], r[2], "recipe.lua")})
  local res = coder.run{chat = chat, dir = dir, task = "t"}
  T.ok(res.ok, tostring(res.error)); T.eq(res.rounds, 1)
  T.ok(read(dir .. "/recipe.lua") == r[2], "run: record 2's recipe")
end)

T.case("oracle: repeated lines, edits at both ends, whole-file changes, random texts", function()
  local pairs_ = {
    {"a\nb\na\nb\n", "a\nb\na\nX\nb\n"}, {"a\na\na\n", "a\na\nb\na\n"}, {"x\ny\n", "top\nx\ny\nbottom\n"},
    {"x\ny\n", ""}, {"", "new\nfile\n"}, {"same\n", "same\n"}, {"a\n\n\nb\n", "a\n\nb\n\n"}}
  for _, c in ipairs(pairs_) do
    T.eq(oracle(c[1], c[2], "k.cu") or "", c[2], ("%q -> %q"):format(c[1], c[2]))
  end
  math.randomseed(18)
  for _ = 1, 200 do
    local a, b = {}, {}
    for k = 1, math.random(1, 12) do a[k] = ("l%d"):format(math.random(1, 3)) end
    for k, l in ipairs(a) do if math.random() < 0.7 then b[#b + 1] = l end if math.random() < 0.3 then b[#b + 1] = "n" .. k end end
    local old, new = table.concat(a, "\n") .. "\n", #b > 0 and table.concat(b, "\n") .. "\n" or ""
    T.eq(oracle(old, new, "recipe.lua") or "", new, ("%q -> %q"):format(old, new))
  end
end)

T.done()
