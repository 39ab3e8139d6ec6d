-- speedrun.agent.budget: the run's limits (nodes, LLM tokens, cost, GPU seconds, wall seconds)
-- over the journal's state.json totals. check_node() before each node, check_call() before each
-- LLM call: nil when within the limits, else the reason ("max_tokens: 1200 used of 1000"). The
-- wall clock counts across sessions (state.wall_seconds holds the earlier sessions' time).
-- docs/agent.md "Resume and budgets".
local H = require "speedrun.harness_core"

local M = {}
local fmt = string.format
local B = {}
B.__index = B

-- limits: {max_nodes, max_tokens, max_cost, max_gpu_seconds, max_wall_seconds}, each nil = none;
-- prices: {prompt = $ per 1M tokens, completion = $ per 1M tokens} or nil
function M.new(limits, state, prices)
  return setmetatable({limits = limits or {}, state = state, prices = prices, t0 = H.now(),
                       wall0 = state.wall_seconds or 0}, B)
end

function B:wall() return self.wall0 + (H.now() - self.t0) end

-- state.wall_seconds brought up to now (before state.json is saved)
function B:sync() self.state.wall_seconds = self:wall() end

local function over(name, used, limit, unit)
  if limit and used >= limit then return fmt("%s: %s%s used of %s%s", name, fmt("%.6g", used), unit, fmt("%.6g", limit), unit) end
end

function B:check_call()
  local L, s = self.limits, self.state
  return over("max_tokens", s.total_tokens or 0, L.max_tokens, "")
      or over("max_cost", s.cost or 0, L.max_cost, " $")
      or over("max_wall_seconds", self:wall(), L.max_wall_seconds, " s")
end

function B:check_node(nodes_done)
  local L = self.limits
  return over("max_nodes", nodes_done, L.max_nodes, "")
      or over("max_gpu_seconds", self.state.gpu_seconds or 0, L.max_gpu_seconds, " s")
      or self:check_call()
end

-- one LLM call's usage into the totals (and its cost when prices are given)
function B:add_usage(usage)
  local s = self.state
  usage = usage or {}
  local p, c = tonumber(usage.prompt_tokens) or 0, tonumber(usage.completion_tokens) or 0
  local t = tonumber(usage.total_tokens) or (p + c)
  s.calls = (s.calls or 0) + 1
  s.prompt_tokens, s.completion_tokens = (s.prompt_tokens or 0) + p, (s.completion_tokens or 0) + c
  s.total_tokens = (s.total_tokens or 0) + t
  if self.prices then
    s.cost = (s.cost or 0) + p * (self.prices.prompt or 0) / 1e6 + c * (self.prices.completion or 0) / 1e6
  end
end

function B:add_gpu(seconds) self.state.gpu_seconds = (self.state.gpu_seconds or 0) + (seconds or 0) end

-- the estimated seconds left: the mean wall time per node times the nodes left
function B:eta(nodes_done)
  local max = self.limits.max_nodes
  if not max or nodes_done == 0 then return nil end
  return self:wall() / nodes_done * math.max(0, max - nodes_done)
end

return M
