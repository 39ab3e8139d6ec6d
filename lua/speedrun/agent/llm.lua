-- speedrun.agent.llm: an OpenAI-compatible chat-completions client (hosted APIs, vLLM, llama.cpp's
-- server) over speedrun.http and speedrun.json. Host-only: the sandbox denies speedrun.agent.* to recipes.
--   local client = llm.new{base_url = "http://127.0.0.1:8000/v1", model = "m",
--                          api_key_env = "OPENAI_API_KEY" (nil: no Authorization header),
--                          temperature = 0.7 (nil: not sent), max_tokens = n (nil: not sent),
--                          reasoning = bool (true: temperature never sent),
--                          max_tokens_field = "max_tokens" (OpenAI's reasoning models: "max_completion_tokens"),
--                          timeout = s (120), connect_timeout = s, retries = n (3), backoff = s (1), max_wait = s (60),
--                          log = "path/llm.jsonl" (nil: no log)}
--   client:chat(messages [, {temperature =, max_tokens =}]) -> reply | nil, "llm: <what>"
--     reply = {content, usage = {prompt_tokens, completion_tokens, total_tokens}, latency_s, model, finish_reason}
--   client.totals = {calls, prompt_tokens, completion_tokens, errors}
-- Every call appends one JSON line to the log: {time, model, messages, response|null, usage, latency_s, error|null}.
local http = require "speedrun.http"
local json = require "speedrun.json"

local M = {}
local Client = {}
Client.__index = Client

local STRINGS = {"api_key_env", "log", "max_tokens_field"}
local NUMBERS = {"temperature", "max_tokens", "timeout", "connect_timeout", "retries", "backoff", "max_wait"}

local function check_field(cfg, name, kind, required)
  local v = cfg[name]
  if v == nil and not required then return end
  if type(v) ~= kind then
    error(("bad argument #1 to 'llm.new' (field '%s' must be a %s, got %s)"):format(name, kind, type(v)), 3)
  end
end

-- llm.new(config) -> client (config errors raise)
function M.new(cfg)
  if type(cfg) ~= "table" then error("bad argument #1 to 'llm.new' (table expected, got " .. type(cfg) .. ")", 2) end
  check_field(cfg, "base_url", "string", true)
  check_field(cfg, "model", "string", true)
  for _, k in ipairs(STRINGS) do check_field(cfg, k, "string") end
  for _, k in ipairs(NUMBERS) do check_field(cfg, k, "number") end
  local c = setmetatable({model = cfg.model, reasoning = cfg.reasoning and true or false}, Client)
  for _, k in ipairs(STRINGS) do c[k] = cfg[k] end
  for _, k in ipairs(NUMBERS) do c[k] = cfg[k] end
  c.base_url = cfg.base_url:gsub("/+$", "")
  c.max_tokens_field = cfg.max_tokens_field or "max_tokens"
  c.totals = {calls = 0, prompt_tokens = 0, completion_tokens = 0, errors = 0}
  return c
end

local function check_messages(messages)
  if type(messages) ~= "table" or #messages == 0 then
    error("bad argument #1 to 'chat' (a non-empty list of messages expected)", 3)
  end
  for i, m in ipairs(messages) do
    if type(m) ~= "table" or type(m.role) ~= "string" or type(m.content) ~= "string" then
      error(("bad argument #1 to 'chat' (message %d must be {role = string, content = string})"):format(i), 3)
    end
  end
end

-- the request body: temperature left out when nil or for reasoning models
function Client:body(messages, opts)
  local list = {}
  for i, m in ipairs(messages) do list[i] = {role = m.role, content = m.content} end
  local b = {model = self.model, messages = list}
  local temperature = opts.temperature
  if temperature == nil then temperature = self.temperature end
  if temperature ~= nil and not self.reasoning then b.temperature = temperature end
  local max_tokens = opts.max_tokens
  if max_tokens == nil then max_tokens = self.max_tokens end
  if max_tokens ~= nil then b[self.max_tokens_field] = max_tokens end
  return json.encode(b)
end

function Client:headers()
  local h = {["Content-Type"] = "application/json", Accept = "application/json"}
  if self.api_key_env then
    local key = os.getenv(self.api_key_env)
    if not key or key == "" then return nil, "environment variable " .. self.api_key_env .. " is not set" end
    h.Authorization = "Bearer " .. key
  end
  return h
end

local function excerpt(s)
  s = s:gsub("%c", " ")
  return #s > 300 and s:sub(1, 297) .. "..." or s
end

local function num(v) return type(v) == "number" and v or 0 end

-- the reply's content and usage from a chat.completion body
local function parse(body, model)
  local r = json.decode(body)
  if type(r) ~= "table" then return nil, "malformed JSON in the reply: " .. excerpt(body) end
  local choices = r.choices
  if type(choices) ~= "table" or type(choices[1]) ~= "table" then return nil, "no choices in the reply: " .. excerpt(body) end
  local msg = choices[1].message
  local content = type(msg) == "table" and msg.content or nil
  local finish = type(choices[1].finish_reason) == "string" and choices[1].finish_reason or nil
  if type(content) ~= "string" or content == "" then
    return nil, ("empty content in the reply (finish_reason %s)"):format(finish or "none")
  end
  local u = type(r.usage) == "table" and r.usage or {}
  local usage = {prompt_tokens = num(u.prompt_tokens), completion_tokens = num(u.completion_tokens)}
  usage.total_tokens = u.total_tokens and num(u.total_tokens) or usage.prompt_tokens + usage.completion_tokens
  return {content = content, usage = usage, model = type(r.model) == "string" and r.model or model,
          finish_reason = finish}
end

function Client:log_call(messages, reply, err, latency)
  if not self.log then return end
  local line = json.encode {time = os.date("!%Y-%m-%dT%H:%M:%SZ"), model = self.model, messages = messages,
                            response = reply and reply.content or json.null, usage = reply and reply.usage or json.null,
                            latency_s = latency, error = err or json.null}
  local f, ferr = io.open(self.log, "a")
  if not f then
    io.stderr:write("llm: cannot write the log: " .. tostring(ferr) .. "\n")
    return
  end
  f:write(line, "\n")
  f:close()
end

-- one POST to {base_url}/chat/completions -> reply | nil, err (err without the "llm: " prefix), latency
function Client:post(messages, opts)
  local headers, herr = self:headers()
  if not headers then return nil, herr, 0 end
  local r, err, info = http.request {method = "POST", url = self.base_url .. "/chat/completions", headers = headers,
                                     body = self:body(messages, opts), timeout = self.timeout,
                                     connect_timeout = self.connect_timeout, retries = self.retries,
                                     backoff = self.backoff, max_wait = self.max_wait}
  if not r then return nil, err, info and info.latency_s or 0 end
  local reply, perr = parse(r.body, self.model)
  if not reply then return nil, perr, r.latency_s end
  reply.latency_s = r.latency_s
  return reply, nil, r.latency_s
end

function Client:chat(messages, opts)
  check_messages(messages)
  if opts ~= nil and type(opts) ~= "table" then error("bad argument #2 to 'chat' (table expected)", 2) end
  local reply, err, latency = self:post(messages, opts or {})
  local t = self.totals
  t.calls = t.calls + 1
  if reply then
    t.prompt_tokens = t.prompt_tokens + reply.usage.prompt_tokens
    t.completion_tokens = t.completion_tokens + reply.usage.completion_tokens
  else
    t.errors = t.errors + 1
    err = "llm: " .. err
  end
  self:log_call(messages, reply, err, latency)
  if not reply then return nil, err end
  return reply
end

return M
