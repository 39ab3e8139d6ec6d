-- speedrun.agent.llm against the scripted OpenAI-compatible server (tests/agent/llm_server.js): the
-- request (path, bearer key, model, messages, temperature and max_tokens sent or left out, reasoning
-- models), the reply and its usage, retries on 429/500 through speedrun.http, every fault as
-- nil, "llm: ...", the totals and the JSONL log. The key comes from SPEEDRUN_TEST_LLM_KEY, which this
-- file sets by running itself again (agent/server.lua's isolate).
local T = require "speedrun.testing"
local json = require "speedrun.json"
local H = require "speedrun.harness_core"

local KEYVAR, KEY = "SPEEDRUN_TEST_LLM_KEY", "sk-test-0123456789"
local server = require "agent.server"
server.isolate {[KEYVAR] = KEY}   -- runs this file again with the key set and no proxy variables

local llm = require "speedrun.agent.llm"
local S = server.start()

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_llm"
H.mkdir(tmp)

local msgs = {{role = "system", content = "You are terse."}, {role = "user", content = "Say \"hi\"\nnow."}}

-- a client on script `id` with fast retries
local function client(id, cfg)
  cfg = cfg or {}
  local c = {base_url = S:url(id, "/v1/"), model = "test-model", api_key_env = KEYVAR, backoff = 0.01,
             max_wait = 2, retries = 2, timeout = 5}
  for k, v in pairs(cfg) do c[k] = v or nil end   -- false: left out
  return llm.new(c)
end

local function sent(id, i)
  local q = S:requests(id)
  return q[i or #q], json.decode(q[i or #q].body), #q
end

T.case("a chat: POST {base_url}/chat/completions with the bearer key, model, messages, temperature, max_tokens", function()
  S:script("basic", {{reply = "hi", usage = {prompt_tokens = 21, completion_tokens = 3, total_tokens = 24}}})
  local c = client("basic", {temperature = 0.7, max_tokens = 64})
  local r = assert(c:chat(msgs))
  T.eq(r.content, "hi")
  T.eq(r.model, "test-model")
  T.eq(r.usage.prompt_tokens, 21)
  T.eq(r.usage.completion_tokens, 3)
  T.eq(r.usage.total_tokens, 24)
  T.ok(type(r.latency_s) == "number" and r.latency_s >= 0 and r.latency_s < 5, "latency_s")
  local req, body = sent("basic")
  T.eq(req.method, "POST")
  T.eq(req.path, "/basic/v1/chat/completions", "one slash between base_url and the path")
  T.eq(req.headers.authorization, "Bearer " .. KEY)
  T.eq(req.headers["content-type"], "application/json")
  T.eq(body.model, "test-model")
  T.eq(#body.messages, 2)
  T.eq(body.messages[2].role, "user")
  T.eq(body.messages[2].content, "Say \"hi\"\nnow.")
  T.close(body.temperature, 0.7, 1e-12)
  T.eq(body.max_tokens, 64)
end)

T.case("temperature and max_tokens: left out when nil, per-call overrides (0 is sent), never for reasoning models", function()
  S:script("temp", {})
  assert(client("temp"):chat(msgs))
  local _, body = sent("temp")
  T.eq(body.temperature, nil, "nil: not sent")
  T.eq(body.max_tokens, nil, "nil: not sent")
  assert(client("temp", {temperature = 0.7}):chat(msgs, {temperature = 0, max_tokens = 5}))
  _, body = sent("temp")
  T.eq(body.temperature, 0, "override 0 is sent")
  T.eq(body.max_tokens, 5)
  local reasoning = client("temp", {temperature = 0.7, reasoning = true, max_tokens = 100,
                                    max_tokens_field = "max_completion_tokens"})
  assert(reasoning:chat(msgs))
  assert(reasoning:chat(msgs, {temperature = 1}))
  local req
  req, body = sent("temp")
  T.eq(body.temperature, nil, "reasoning: temperature never sent")
  T.ok(not req.body:find("temperature"), "no temperature key at all")
  T.eq(body.max_completion_tokens, 100)
  T.eq(body.max_tokens, nil)
end)

T.case("no api_key_env: no Authorization header; an unset variable is an error before any request", function()
  S:script("nokey", {})
  assert(client("nokey", {api_key_env = false}):chat(msgs))
  T.eq(sent("nokey").headers.authorization, nil)
  local c = client("nokey", {api_key_env = "SPEEDRUN_TEST_NO_SUCH_KEY_VAR"})
  local r, err = c:chat(msgs)
  T.eq(r, nil)
  T.eq(err, "llm: environment variable SPEEDRUN_TEST_NO_SUCH_KEY_VAR is not set")
  T.eq(#S:requests("nokey"), 1, "nothing sent")
  T.eq(c.totals.errors, 1)
end)

T.case("429 with Retry-After, then success", function()
  S:script("r429", {{status = 429, headers = {["Retry-After"] = "1"}, body = '{"error": {"message": "rate limited"}}'},
                    {reply = "after the wait"}})
  local c = client("r429")
  local r = assert(c:chat(msgs))
  T.eq(r.content, "after the wait")
  T.ok(r.latency_s >= 0.9, "Retry-After honoured: " .. r.latency_s)
  T.eq(#S:requests("r429"), 2)
  T.eq(c.totals.errors, 0)
end)

T.case("500s then success; 500 forever gives up with a clear error", function()
  S:script("r500", {{status = 500}, {status = 502}, {reply = "third time"}})
  T.eq(assert(client("r500"):chat(msgs)).content, "third time")
  S:script("dead", {}, {status = 500, body = '{"error": {"message": "model crashed"}}'})
  local c = client("dead")
  local r, err = c:chat(msgs)
  T.eq(r, nil)
  local want = ('llm: http: POST %s/chat/completions: HTTP 500 (gave up after 3 attempts): {"error": {"message": "model crashed"}}')
               :format(S:url("dead", "/v1"))
  T.eq(err, want)
  T.eq(#S:requests("dead"), 3)
end)

T.case("a 401 is not retried", function()
  S:script("auth", {}, {status = 401, json = {error = {message = "Incorrect API key provided"}}})
  local r, err = client("auth"):chat(msgs)
  T.eq(r, nil)
  T.ok(err:find("^llm: http: POST .* HTTP 401: .*Incorrect API key provided"), err)
  T.eq(#S:requests("auth"), 1)
end)

T.case("a stalled server: a timeout error", function()
  S:script("stall", {}, {stall = true})
  local r, err = client("stall", {timeout = 0.3, retries = 1}):chat(msgs)
  T.eq(r, nil)
  T.ok(err:find("^llm: http: POST ") and err:find("timed out", 1, true), err)
end)

T.case("malformed JSON, missing choices, empty content, null content: nil, 'llm: ...'", function()
  S:script("bad", {{body = '{"choices": [{"message": {"content": "cut'},
                   {json = {object = "chat.completion", usage = {prompt_tokens = 1}}},
                   {reply = ""},
                   {json = {choices = {{message = {role = "assistant", content = json.null}, finish_reason = "length"}}}},
                   {json = {choices = json.array({})}}})
  local c = client("bad")
  local cases = {"^llm: malformed JSON in the reply: {\"choices\"", "^llm: no choices in the reply",
                 "^llm: empty content in the reply %(finish_reason stop%)",
                 "^llm: empty content in the reply %(finish_reason length%)", "^llm: no choices in the reply"}
  for i, pat in ipairs(cases) do
    local r, err = c:chat(msgs)
    T.eq(r, nil, "case " .. i)
    T.ok(type(err) == "string" and err:find(pat), ("case %d: %s"):format(i, tostring(err)))
  end
  T.eq(c.totals.calls, 5)
  T.eq(c.totals.errors, 5)
end)

T.case("totals and the JSONL log: one line per call, successes and errors", function()
  local log = tmp .. "/llm.jsonl"
  os.remove(log)
  S:script("log", {{reply = "one", usage = {prompt_tokens = 10, completion_tokens = 2, total_tokens = 12}},
                   {status = 400, body = "bad request"},
                   {echo = true, usage = {prompt_tokens = 7, completion_tokens = 4, total_tokens = 11}}})
  local c = client("log", {log = log})
  assert(c:chat(msgs))
  T.eq(c:chat(msgs), nil)
  local r = assert(c:chat({{role = "user", content = "echo me"}}))
  T.eq(r.content, "echo me")
  T.eq(c.totals.calls, 3)
  T.eq(c.totals.prompt_tokens, 17)
  T.eq(c.totals.completion_tokens, 6)
  T.eq(c.totals.errors, 1)
  local lines, raw = {}, {}
  for l in io.lines(log) do
    raw[#raw + 1] = l
    lines[#lines + 1] = assert(json.decode(l), "a JSON line: " .. l)   -- (null members decode as absent)
  end
  T.eq(#lines, 3)
  T.eq(lines[1].model, "test-model")
  T.eq(lines[1].response, "one")
  T.eq(lines[1].usage.total_tokens, 12)
  T.ok(raw[1]:find('"error":null', 1, true), "error: null on success")
  T.eq(lines[1].messages[2].content, msgs[2].content)
  T.ok(lines[1].time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), lines[1].time)
  T.ok(type(lines[1].latency_s) == "number", "latency_s")
  T.ok(raw[2]:find('"response":null', 1, true) and raw[2]:find('"usage":null', 1, true), raw[2])
  T.ok(lines[2].error:find("^llm: http: POST .* HTTP 400: bad request$"), lines[2].error)
  T.eq(lines[3].messages[1].content, "echo me")
  local text = io.open(log):read("a")
  T.ok(not text:find(KEY, 1, true), "the key is never logged")
end)

T.case("argument errors", function()
  T.raises(function() llm.new() end, "bad argument #1 to 'llm.new'")
  T.raises(function() llm.new {model = "m"} end, "field 'base_url' must be a string")
  T.raises(function() llm.new {base_url = "http://x/v1"} end, "field 'model' must be a string")
  T.raises(function() llm.new {base_url = "http://x/v1", model = "m", temperature = "hot"} end, "field 'temperature'")
  local c = llm.new {base_url = "http://x/v1", model = "m"}
  T.raises(function() c:chat({}) end, "non-empty list of messages")
  T.raises(function() c:chat({{role = "user"}}) end, "message 1 must be")
  T.raises(function() c:chat(msgs, 5) end, "bad argument #2 to 'chat'")
  T.eq(c.totals.calls, 0)
end)

S:stop()
T.done()
