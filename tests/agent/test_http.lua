-- speedrun.http against the scripted server (tests/agent/llm_server.js): responses with lowercase
-- headers, request headers and bodies as sent, retries on 429 (Retry-After honoured and capped), 5xx,
-- hang-ups and timeouts with doubling waits, no retry on other 4xx, errors naming method, url, status
-- and a short body excerpt, argument errors. Waits are shortened with backoff/max_wait.
local T = require "speedrun.testing"
local http = require "speedrun.http"

local server = require "agent.server"
server.isolate()   -- runs this file again without proxy variables (one case sets its own)
local S = server.start()
local port = S.port

local function request(t) return http.request(t) end

T.case("GET: status, body, lowercase headers (repeated ones joined), one attempt", function()
  S:script("get", {{status = 200, body = "hello", headers = {["X-Custom-Thing"] = "Yes", ["X-Multi"] = {"a", "b"}}}})
  local r = assert(request {url = S:url("get", "/path?q=1"), headers = {["X-Test"] = "t1", Accept = "text/plain"}})
  T.eq(r.status, 200)
  T.eq(r.body, "hello")
  T.eq(r.headers["x-custom-thing"], "Yes")
  T.eq(r.headers["X-Custom-Thing"], nil, "names are lowercase")
  T.eq(r.headers["x-multi"], "a, b")
  T.eq(r.attempts, 1)
  T.ok(type(r.latency_s) == "number" and r.latency_s >= 0 and r.latency_s < 5, "latency_s")
  local q = S:requests("get")
  T.eq(#q, 1)
  T.eq(q[1].method, "GET")
  T.eq(q[1].path, "/get/path?q=1")
  T.eq(q[1].headers["x-test"], "t1")
  T.eq(q[1].headers["accept"], "text/plain")
  T.eq(q[1].body, "")
end)

T.case("POST (the default with a body), PUT, DELETE, HEAD: method, body and content type as sent", function()
  S:script("post", {})
  local body = '{"a": [1, 2, "\\u00e9"]}\0tail'
  local r = assert(request {url = S:url("post"), body = body, headers = {["Content-Type"] = "application/json"}})
  T.eq(r.status, 200)
  assert(request {method = "PUT", url = S:url("post"), body = "x"})
  assert(request {method = "DELETE", url = S:url("post")})
  local h = assert(request {method = "HEAD", url = S:url("post")})
  T.eq(h.body, "")
  local q = S:requests("post")
  T.eq(#q, 4)
  T.eq(q[1].method, "POST")
  T.eq(q[1].bytes, #body, "every byte sent, NUL included")
  T.eq(q[1].body:sub(1, 23), body:sub(1, 23))
  T.eq(q[1].headers["content-type"], "application/json")
  T.eq(q[1].headers["expect"], nil, "no Expect: 100-continue")
  T.eq(q[2].method, "PUT")
  T.eq(q[2].body, "x")
  T.eq(q[2].headers["content-type"], "application/octet-stream")
  T.eq(q[3].method, "DELETE")
  T.eq(q[4].method, "HEAD")
end)

T.case("429 with Retry-After: 1 waits the server's second (not the 10 ms backoff), then succeeds", function()
  S:script("ra", {{status = 429, headers = {["Retry-After"] = "1"}, body = "slow down"}, {status = 200, body = "ok"}})
  local r = assert(request {url = S:url("ra"), backoff = 0.01})
  T.eq(r.status, 200)
  T.eq(r.body, "ok")
  T.eq(r.attempts, 2)
  T.ok(r.latency_s >= 0.9 and r.latency_s < 5, "waited Retry-After: " .. r.latency_s)
  T.eq(#S:requests("ra"), 2)
end)

T.case("Retry-After beyond max_wait is capped", function()
  S:script("cap", {{status = 429, headers = {["Retry-After"] = "100"}}, {status = 200, body = "ok"}})
  local r = assert(request {url = S:url("cap"), backoff = 0.01, max_wait = 0.2})
  T.eq(r.attempts, 2)
  T.ok(r.latency_s >= 0.15 and r.latency_s < 3, "capped wait: " .. r.latency_s)
end)

T.case("500 and 503 then success: retried with doubling waits", function()
  S:script("5xx", {{status = 500, body = "boom"}, {status = 503}, {status = 200, body = "fine"}})
  local r = assert(request {url = S:url("5xx"), backoff = 0.1, retries = 3})
  T.eq(r.body, "fine")
  T.eq(r.attempts, 3)
  T.ok(r.latency_s >= 0.28 and r.latency_s < 3, "waited 0.1 + 0.2 s: " .. r.latency_s)
end)

T.case("500 forever: gives up after retries with method, url, status and body in the error", function()
  S:script("down", {}, {status = 500, body = "internal\nerror"})
  local r, err, info = request {method = "POST", url = S:url("down", "/v1/x"), body = "{}", retries = 2, backoff = 0.01}
  T.eq(r, nil)
  local want = ("http: POST http://127.0.0.1:%d/down/v1/x: HTTP 500 (gave up after 3 attempts): internal error"):format(port)
  T.eq(err, want)
  T.eq(info.status, 500)
  T.eq(info.body, "internal\nerror")
  T.eq(info.attempts, 3)
  T.eq(#S:requests("down"), 3)
end)

T.case("other 4xx are never retried; the body excerpt is at most 300 bytes", function()
  S:script("nf", {}, {status = 404, body = string.rep("x", 1000)})
  local r, err, info = request {url = S:url("nf"), retries = 3, backoff = 0.01}
  T.eq(r, nil)
  T.eq(#S:requests("nf"), 1, "no retry on 404")
  T.eq(info.attempts, 1)
  local excerpt = err:match("HTTP 404: (x+%.%.%.)$")
  T.ok(excerpt and #excerpt <= 300, "excerpt: " .. err)
  S:script("bad", {}, {status = 400})
  r, err = request {url = S:url("bad"), retries = 3, backoff = 0.01}
  T.eq(err, ("http: GET http://127.0.0.1:%d/bad: HTTP 400 (empty body)"):format(port))
  T.eq(#S:requests("bad"), 1, "no retry on 400")
end)

T.case("a stalled connection times out (retried, then a timeout error)", function()
  S:script("stall", {}, {stall = true})
  local t0 = os.time()
  local r, err, info = request {url = S:url("stall"), timeout = 0.3, retries = 1, backoff = 0.01}
  T.eq(r, nil)
  T.ok(err:find("timed out", 1, true) and err:find("(gave up after 2 attempts)", 1, true), err)
  T.eq(info.status, nil)
  T.ok(info.latency_s >= 0.55 and info.latency_s < 3, "two 0.3 s timeouts: " .. info.latency_s)
  T.ok(os.time() - t0 < 5)
  T.eq(#S:requests("stall"), 2)
end)

T.case("a hang-up without an answer is retried", function()
  S:script("hup", {{hangup = true}}, {status = 200, body = "back"})
  local r = assert(request {url = S:url("hup"), backoff = 0.01})
  T.eq(r.body, "back")
  T.eq(r.attempts, 2)
end)

T.case("connection refused: retried, then an error naming the url", function()
  local r, err, info = request {url = "http://127.0.0.1:1/none", retries = 1, backoff = 0.01}
  T.eq(r, nil)
  T.ok(err:find("^http: GET http://127%.0%.0%.1:1/none: .*%(gave up after 2 attempts%)$"), err)
  T.eq(info.attempts, 2)
  r, err = request {url = "nosuchscheme://x/y", retries = 3, backoff = 0.01}
  T.ok(r == nil and err:find("^http: GET nosuchscheme://x/y: ") and not err:find("attempts"), "not retried: " .. err)
end)

T.case("a proxy from the environment (http_proxy) is used", function()
  S:script("proxied", {}, {status = 200, body = "via proxy"})
  local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_http"
  os.execute("mkdir -p " .. T.shell_quote(tmp))
  local script = tmp .. "/proxied.lua"
  local f = assert(io.open(script, "w"))
  f:write([[local r, err = require("speedrun.http").request {url = "http://llm.invalid/proxied/x", retries = 0}
io.write(r and r.body or err)]])
  f:close()
  local cmd = ("env -u no_proxy http_proxy=http://127.0.0.1:%d %s run %s"):format(port, T.shell_quote(arg[-1]),
                                                                                   T.shell_quote(script))
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  T.eq(out, "via proxy")
  local q = S:requests("proxied")
  T.eq(#q, 1)
  T.eq(q[1].path, "http://llm.invalid/proxied/x", "an absolute URL: the proxy's form")
end)

T.case("argument errors", function()
  T.raises(function() http.request() end, "bad argument #1")
  T.raises(function() http.request {} end, "field 'url' must be a non-empty string")
  T.raises(function() http.request {url = "http://x", timeout = -1} end, "field 'timeout'")
  T.raises(function() http.request {url = "http://x", retries = 1.5} end, "field 'retries'")
  T.raises(function() http.request {url = "http://x", headers = {A = 1}} end, "field 'headers'")
  T.raises(function() http.request {url = "http://x", headers = {A = "b\r\nEvil: 1"}} end, "bad character")
  T.raises(function() http.request {url = "http://x", method = "get"} end, "field 'method'")
  T.raises(function() http.request {url = "http://x", body = {}} end, "field 'body' must be a string")
end)

S:stop()
T.done()
