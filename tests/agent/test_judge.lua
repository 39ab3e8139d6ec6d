-- speedrun agent judge against the scripted OpenAI-compatible server (agent/llm_server.js) over
-- cells of the hand-built micro sweep (agent/study_fixture.lua): the prompt (start recipe, the
-- reference diff, the agent's diff), the reply parsing (a good JSON block, one after </think>, a
-- bare object, malformed JSON, no JSON, no reproducibility_score, a score out of range), the
-- re-ask, a failed call, a cell without a valid agent node, judge.json and its join to the metrics,
-- the kept cells, and the command line. Every failure is one error for its cell, never a crash.
local T = require "speedrun.testing"
local json = require "speedrun.json"
local server = require "agent.server"
server.isolate {}

local judge = require "speedrun.agent.judge"
local metrics = require "speedrun.agent.metrics"
local llm = require "speedrun.agent.llm"
local fixture = require "agent.study_fixture"
local S = server.start()

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_judge"
os.execute("mkdir -p '" .. tmp .. "'")
local cells = fixture.build(tmp .. "/sweep", "..")

local GOOD = 'The human changes: RoPE, the trapezoid schedule, the batch.\n```json\n{"key_changes": ["rope", "schedule", '
  .. '"batch"], "agent_changes": [{"change": "rope", "reproduces": "rope", "correct": true}], "reproducibility_score": 0.75}\n```\n'

T.case("parse: good block, </think>, bare object, and every bad reply as an error", function()
  local P = assert(judge.parse(GOOD))
  T.close(P.reproducibility_score, 0.75, 1e-12)
  T.eq(#P.key_changes, 3)
  P = assert(judge.parse('<think>maybe ```json\n{"reproducibility_score": 0.1}\n```</think>\nFinal:\n```json\n'
    .. '{"reproducibility_score": 0.5}\n```'))
  T.close(P.reproducibility_score, 0.5, 1e-12, "the block after </think>")
  P = assert(judge.parse('Analysis... so {"reproducibility_score": 1, "note": "a } in a string"} is my answer.'))
  T.close(P.reproducibility_score, 1, 1e-12, "a bare object")
  P = assert(judge.parse('```\n{"reproducibility_score": "0.25"}\n```'))
  T.close(P.reproducibility_score, 0.25, 1e-12, "an unlabelled fence, a numeric string")
  local _, err = judge.parse('```json\n{"reproducibility_score": 0.5,,}\n```')
  T.ok(err:match("^malformed JSON"), err)
  _, err = judge.parse("The agent reproduced most changes. I would say about two thirds.")
  T.ok(err:match("^no JSON"), err)
  _, err = judge.parse('```json\n{"score": 0.5}\n```')
  T.ok(err:match("no reproducibility_score"), err)
  _, err = judge.parse('```json\n{"reproducibility_score": 75}\n```')
  T.ok(err:match("in %[0, 1%]"), err)
  _, err = judge.parse('```json\n{"reproducibility_score": "high"}\n```')
  T.ok(err:match("in %[0, 1%]"), err)
  _, err = judge.parse("")
  T.ok(err:match("empty"), err)
  _, err = judge.parse(nil)
  T.ok(err:match("empty"), err)
end)

T.case("unified diffs: context, hunks, added and removed lines", function()
  local d = judge.unified("a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nD\ne\nf\ng\nh\ni\n", "r.lua")
  T.ok(d:match("^%-%-%- a/r%.lua\n%+%+%+ b/r%.lua\n"), d)
  T.ok(d:match("\n%-d\n%+D\n"), d)
  T.ok(d:match("\n%+i\n"), d)
  T.eq(judge.unified("x\n", "x\n", "r.lua"), "")
end)

-- the judge over some cells, each with its own script; returns the results by cell index
local function run_cells(idx, scripts, opts)
  local dirs, by_dir = {}, {}
  for _, i in ipairs(idx) do
    dirs[#dirs + 1] = cells[i]
    by_dir[cells[i]] = "c" .. i
    if scripts[i] then S:script("c" .. i, scripts[i]) end
  end
  local results = judge.run(dirs, {model = "judge-m", retries = opts and opts.retries, force = opts and opts.force,
    make_chat = function(cell)
      return llm.new {base_url = S:url(by_dir[cell.dir], "/v1"), model = "judge-m", retries = 0, timeout = 5,
                      log = cell.dir .. "/judge.llm.jsonl"}
    end})
  local out = {}
  for _, R in ipairs(results) do for _, i in ipairs(idx) do if cells[i] == R.dir then out[i] = R end end end
  return out
end

T.case("a sweep's cells: good, malformed, missing JSON, re-asked, failed call, nothing to judge", function()
  -- cells: 5 = task 1 L1 aide seed 1 (best node = record 2's recipe); 6, 7, 8 = other task-1 cells;
  -- 11 = task 2 none flat seed 1 (no valid agent node); 12 = task 2 none flat seed 2
  local out = run_cells({5, 6, 7, 8, 11, 12}, {
    [5] = {{reply = GOOD}},
    [6] = {{reply = '```json\n{"reproducibility_score": 0.5,\n```'}, {reply = '```json\n{oops}\n```'}},
    [7] = {{reply = "I think the agent did fine."}, {reply = "Still no JSON."}},
    [8] = {{reply = "no json here"}, {reply = '{"reproducibility_score": 0.0}'}},
    [12] = {{status = 500, body = "boom"}},
  }, {retries = 1})
  T.eq(out[5].status, "ok")
  T.close(out[5].reproducibility_score, 0.75, 1e-12)
  T.eq(out[5].best_node, 1)
  T.eq(out[6].status, "error")
  T.ok(out[6].error:match("^malformed JSON"), out[6].error)
  T.eq(out[7].status, "error")
  T.ok(out[7].error:match("^no JSON"), out[7].error)
  T.eq(out[8].status, "ok", "the re-ask got the JSON")
  T.close(out[8].reproducibility_score, 0, 1e-12)
  T.eq(out[11].status, "skipped")
  T.ok(out[11].error:match("no valid agent node"), out[11].error)
  T.eq(out[12].status, "error")
  T.ok(out[12].error:match("^judge call failed"), out[12].error)
  -- the prompt: the start recipe, the reference diff and (here) the same diff from the agent
  local q = S:requests("c5")
  T.eq(#q, 1)
  local body = json.decode(q[1].body)
  T.eq(body.model, "judge-m")
  local user = body.messages[2].content
  T.ok(user:match("# Baseline recipe %(record 1%)"), "the start recipe")
  local ref = user:match("# Human changes.-```diff\n(.-)```")
  local agent = user:match("# Agent changes.-```diff\n(.-)```")
  T.ok(ref and ref:match("%+%+%+ b/recipe%.lua"), "the reference diff")
  T.eq(agent, ref, "the agent's best node is record 2's recipe")
  T.ok(user:match("reproducibility_score"), "the output format")
  -- the re-ask: the reply and the reminder follow the prompt
  q = S:requests("c7")
  T.eq(#q, 2)
  local m = json.decode(q[2].body).messages
  T.eq(#m, 4)
  T.eq(m[3].role, "assistant")
  T.ok(m[4].content:match("no usable JSON"), m[4].content)
  -- agent diff of a cell whose best node did not change the recipe
  local u6 = json.decode(S:requests("c6")[1].body).messages[2].content
  T.ok(u6:match("# Agent changes.-```diff\n%(no change%)"), "no change")
  -- judge.json on disk, one per cell; the calls logged next to it
  local j5 = json.decode(io.open(cells[5] .. "/judge.json"):read("a"))
  T.eq(j5.schema, "speedrun.agent.judge/1")
  T.eq(j5.model, "judge-m")
  T.close(j5.reproducibility_score, 0.75, 1e-12)
  T.ok(io.open(cells[5] .. "/judge.llm.jsonl"), "the call log")
  local j7 = json.decode(io.open(cells[7] .. "/judge.json"):read("a"))
  T.eq(j7.reproducibility_score, nil, "null")
  T.ok(j7.error:match("no JSON"))
  -- joined to the metrics
  local R = metrics.compute(metrics.load({tmp .. "/sweep"}), {reps = 50})
  for _, r in ipairs(R.runs) do
    if r.dir == cells[5] then T.close(r.judge, 0.75, 1e-12) end
    if r.dir == cells[7] then T.eq(r.judge, nil) T.ok(r.judge_error:match("no JSON")) end
  end
end)

T.case("judged cells are kept (same model) unless --force; a raising chat is an error, not a crash", function()
  local out = run_cells({5}, {})
  T.ok(out[5].kept, "kept")
  T.eq(#S:requests("c5"), 1, "no new call")
  S:script("c5", {{reply = '```json\n{"reproducibility_score": 0.25}\n```'}})
  out = run_cells({5}, {}, {force = true})
  T.close(out[5].reproducibility_score, 0.25, 1e-12)
  local res = judge.run({cells[6]}, {model = "x", chat = function() error("network gone") end, retries = 0})
  T.eq(res[1].status, "error")
  T.ok(res[1].error:match("network gone"), res[1].error)
end)

T.case("speedrun agent judge: per-cell lines, exit 1 when a cell failed", function()
  S:script("cli", {{reply = GOOD}, {reply = "nothing"}})
  local exe = T.shell_quote(arg[-1])
  local p = io.popen(exe .. " agent judge " .. T.shell_quote(cells[2]) .. " " .. T.shell_quote(cells[3])
    .. " --model cli-judge --base-url " .. S:url("cli", "/v1") .. " --retries 0 2>&1; echo rc=$?")
  local text = p:read("a")
  p:close()
  T.ok(text:match("ok%s+0%.750"), text)
  T.ok(text:match("error%s+%-%s+.-no JSON"), text)
  T.ok(text:match("2 cells, 1 errors"), text)
  T.ok(text:match("rc=1"), text)
  p = io.popen(exe .. " agent judge " .. T.shell_quote(cells[2]) .. " 2>&1; echo rc=$?")
  text = p:read("a")
  p:close()
  T.ok(text:match("needs %-%-model") and text:match("rc=2"), text)
end)

S:stop()
T.done()
