-- speedrun.agent.cli: `speedrun agent run | resume | report` (host/cli/cmd_agent.c calls main).
-- Options are checked before any work (a usage error exits 2). `run` builds the chat client and
-- the coder in compose(), the one place where speedrun.agent.llm and speedrun.agent.coder (or, with
-- --coder-cmd, speedrun.agent.extcoder) are wired; the loop itself (loop.lua) only sees the objects.
-- docs/agent.md.
local json = require "speedrun.json"
local loop = require "speedrun.agent.loop"
local report = require "speedrun.agent.report"
local search = require "speedrun.agent.search"

local M = {}
local fmt = string.format

local USAGE = {}
USAGE.main = [[
usage: speedrun agent run --task N (--model M --base-url URL | --coder-cmd CMD) [options]
       speedrun agent resume DIR [budget options]
       speedrun agent report DIR
       speedrun agent sweep --tasks 1-4 --hints none,L1 --scaffolds aide,flat --models M --seeds 3 [options]
       speedrun agent chain --from 1 --to N --models M [options]
       speedrun agent metrics DIR... [--out DIR]
       speedrun agent judge DIR... --model M --base-url URL
An LLM research loop over a task: a version tree of recipes, each node written by the model's
coder and scored by the host (`speedrun score`). `speedrun agent CMD --help` for each command;
docs/agent.md.
]]
USAGE.run = [[
usage: speedrun agent run --task N (--model M --base-url URL | --coder-cmd CMD) [options]
  --task N               the task (start record N, target record N+1)
  --start-from DIR       v_0's recipe files (.lua, .cu, .cuh) from DIR instead of record N's (a chain)
  --hint LEVEL           hint level 1, 2 or 3 (a list like 1,2 gives several)
  --model M              the model name sent to the server
  --base-url URL         an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1)
  --api-key-env NAME     environment variable holding the API key (default: OPENAI_API_KEY when set,
                         else no key, as for a local server)
  --temperature T        sampling temperature (default: not sent)
  --coder-cmd CMD        an external coder: a shell command line (any CLI coding agent) run in each
                         node's workspace, its edits taken as the node's (--model then optional: it
                         only writes the LLM summaries); docs/agent.md "External coders"
  --coder-timeout S      seconds before the external coder is killed (default 1800)
  --coder-see-all        let the external coder see the checkout's tasks/, hints/, tests/ and .git/
                         (the answers; hidden by default through user and mount namespaces)
  --scale S              micro | demo | proxy | full | auto (default auto: proxy on a GPU, micro on the CPU)
  --runs K               score runs per node (default 1)
  --scaffold NAME        aide (default), flat, tree, forest, multi-aide, or greedy (keep-or-revert:
                         kept nodes committed to the git branch speedrun/greedy in DIR/greedy/,
                         every attempt in DIR/results.tsv; needs git)
  --seed N               the search's seed (default 1)
  --n-initial N  --debug-prob P  --max-bug-depth N  --n-iterations N   search parameters
  --max-nodes N          nodes besides v_0 (default 20)
  --parallel N           score up to N nodes of an iteration at once as jobs (one per GPU; N slots on
                         the CPU); the benchmark codes them in turn, then runs them together
  --node-backend B       local (default) or slurm: each iteration's nodes as one sbatch array
  --node-sbatch-args A   extra sbatch arguments for the node jobs, split at blanks
  --max-tokens N  --max-cost USD  --max-gpu-seconds S  --max-wall-seconds S   budgets
  --price-prompt USD  --price-completion USD   prices per million tokens (for --max-cost)
  --no-llm-summary       the outcome summary is the host's parse only
  --out DIR              the run's folder (default runs/agent-task<N>-<time>)
  --device D  --steps N  --time-limit S  --threads N  --data NAME  --train-files GLOB
  --val-files GLOB  --calibration FILE   passed to `speedrun score`
  --quiet                no progress lines
]]
USAGE.resume = [[
usage: speedrun agent resume DIR [--max-nodes N] [--max-tokens N] [--max-cost USD]
                               [--max-gpu-seconds S] [--max-wall-seconds S] [--quiet]
Continues the run in DIR where it stopped (killed, interrupted or at a budget): finished nodes
are kept, an unfinished one is made again. Budget options replace the run's limits.
]]
USAGE.report = [[
usage: speedrun agent report DIR
Writes DIR/report.html (the version tree, every node's hypothesis, diff and metrics) and
DIR/summary.json.
]]

local function die(msg, code)
  io.stderr:write("speedrun agent: ", msg, "\n")
  return code or 2
end

-- option kinds: "int" (>= 1), "int0" (>= 0), "num" (> 0), "num0" (>= 0), "real", "prob" ([0, 1]),
-- "str", "flag"
local SPEC = {task = "int", hint = "str", model = "str", ["base-url"] = "str", ["api-key-env"] = "str",
  temperature = "num0", scale = "str", runs = "int", scaffold = "str", seed = "int0", ["n-initial"] = "int",
  ["debug-prob"] = "prob", ["max-bug-depth"] = "int0", ["n-iterations"] = "int", ["max-nodes"] = "int",
  ["max-tokens"] = "int", ["max-cost"] = "num", ["max-gpu-seconds"] = "num", ["max-wall-seconds"] = "num",
  ["price-prompt"] = "num0", ["price-completion"] = "num0", ["no-llm-summary"] = "flag", out = "str",
  device = "str", steps = "int", ["time-limit"] = "num", threads = "int", data = "str", ["train-files"] = "str",
  ["val-files"] = "str", calibration = "str", quiet = "flag", help = "flag", ["coder-cmd"] = "str",
  ["coder-timeout"] = "num", ["coder-see-all"] = "flag", ["start-from"] = "str", parallel = "int", ["node-backend"] = "str",
  ["node-sbatch-args"] = "str"}

local CHECK = {
  int = function(v) local n = tonumber(v) return n and n >= 1 and n == math.floor(n), "a positive integer" end,
  int0 = function(v) local n = tonumber(v) return n and n >= 0 and n == math.floor(n), "an integer >= 0" end,
  num = function(v) local n = tonumber(v) return n and n > 0 and n < math.huge, "a number above 0" end,
  num0 = function(v) local n = tonumber(v) return n and n >= 0 and n < math.huge, "a number >= 0" end,
  real = function(v) local n = tonumber(v) return n and n > -math.huge and n < math.huge, "a number" end,
  prob = function(v) local n = tonumber(v) return n and n >= 0 and n <= 1, "a number between 0 and 1" end,
  str = function(v) return v ~= "", "a value" end,
}
M.SPEC, M.CHECK = SPEC, CHECK

-- args -> options, positionals | nil, message; allowed: the option names this command takes;
-- spec: more option kinds (a command's own options: sweep, chain)
local function parse(args, allowed, spec)
  local o, pos, i = {}, {}, 1
  while i <= #args do
    local a = args[i]
    local name, val = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if a == "-h" then name = "help" end
    if name then
      local kind = allowed[name] and (SPEC[name] or spec and spec[name])
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then o[name] = true
      else
        if not val then   -- the next argument, unless it is an option (--name=--x passes one that starts with --)
          i = i + 1
          val = args[i]
          if val and val:sub(1, 2) == "--" then val = nil end
        end
        if not val then return nil, "option --" .. name .. " needs a value" end
        local ok, what = CHECK[kind](val)
        if not ok then return nil, fmt("--%s must be %s (got '%s')", name, what, val) end
        o[name] = val
      end
    else pos[#pos + 1] = a end
    i = i + 1
  end
  return o, pos
end

M.parse = parse

local function names(list)
  local t = {}
  for _, n in ipairs(list) do t[n] = true end
  return t
end

local BUDGETS = {"max-nodes", "max-tokens", "max-cost", "max-gpu-seconds", "max-wall-seconds"}
local RUN_OPTS, RESUME_OPTS = {}, names {"max-nodes", "max-tokens", "max-cost", "max-gpu-seconds", "max-wall-seconds", "quiet", "help"}
for k in pairs(SPEC) do RUN_OPTS[k] = true end

local function budgets_of(o, defaults)
  local b = defaults or {}
  for _, k in ipairs(BUDGETS) do
    if o[k] then b[(k:gsub("-", "_"))] = tonumber(o[k]) end
  end
  return b
end

-- the score options passed through to `speedrun score`
local function score_args(o)
  local out = {}
  for _, k in ipairs {"device", "steps", "time-limit", "threads", "data", "train-files", "val-files", "calibration"} do
    if o[k] then out[#out + 1] = "--" .. k out[#out + 1] = o[k] end
  end
  return out
end

-- the run's config.json from the options
function M.config(o)
  local prices
  if o["price-prompt"] or o["price-completion"] then
    prices = {prompt = tonumber(o["price-prompt"]) or 0, completion = tonumber(o["price-completion"]) or 0}
  end
  return {schema = "speedrun.agent.config/1", task = tonumber(o.task), hint = o.hint or json.null, model = o.model,
          base_url = o["base-url"], api_key_env = o["api-key-env"] or json.null,
          temperature = tonumber(o.temperature) or json.null, scale = o.scale or "auto", runs = tonumber(o.runs) or 1,
          scaffold = o.scaffold or "aide", seed = tonumber(o.seed) or 1,
          llm_summary = not o["no-llm-summary"] and o.model ~= nil and o["base-url"] ~= nil,
          coder_cmd = o["coder-cmd"] or json.null, coder_timeout = tonumber(o["coder-timeout"]) or json.null,
          coder_see_all = o["coder-see-all"] and true or json.null,
          start_from = o["start-from"] or json.null,
          search = {n_initial = tonumber(o["n-initial"]), debug_prob = tonumber(o["debug-prob"]),
                    max_bug_depth = tonumber(o["max-bug-depth"]), n_iterations = tonumber(o["n-iterations"])},
          budgets = budgets_of(o, {max_nodes = 20}), prices = prices or json.null, score_args = score_args(o),
          parallel = M.parallel_of(o)}
end

-- config.parallel from --parallel, --node-backend, --node-sbatch-args (json null: one at a time)
function M.parallel_of(o)
  if not o.parallel and not o["node-backend"] then return json.null end
  local args = {}
  for a in (o["node-sbatch-args"] or ""):gmatch("%S+") do args[#args + 1] = a end
  return {n = tonumber(o.parallel) or 1, backend = o["node-backend"] or "local", sbatch_args = json.array(args)}
end

-- THE WIRING: the chat client (speedrun.agent.llm) and the coder (speedrun.agent.coder) for a run's
-- config; nil, message when a piece is not built in. The loop takes any object with
-- :chat(messages) (or a function) and any table with .run{...} (docs/agent.md "The loop").
function M.compose(config, dir)
  if type(config.coder_cmd) == "string" then return M.compose_external(config, dir) end
  local ok_llm, llm = pcall(require, "speedrun.agent.llm")
  local ok_coder, coder = pcall(require, "speedrun.agent.coder")
  local missing = {}
  if not ok_llm then missing[#missing + 1] = "speedrun.agent.llm (the chat client)" end
  if not ok_coder then missing[#missing + 1] = "speedrun.agent.coder (the SEARCH/REPLACE coder)" end
  if #missing > 0 then
    return nil, "this speedrun has no " .. table.concat(missing, " and ") .. " yet: `speedrun agent run` needs "
      .. "both (lua/speedrun/agent/llm.lua, coder.lua); the loop, resume and report are here"
  end
  local temperature = config.temperature ~= json.null and config.temperature or nil
  -- the key: --api-key-env's variable (which must be set), else OPENAI_API_KEY when set, else none (a
  -- local server)
  local key_env = config.api_key_env ~= json.null and config.api_key_env or nil
  if not key_env and os.getenv("OPENAI_API_KEY") then key_env = "OPENAI_API_KEY" end
  local client = llm.new {base_url = config.base_url, model = config.model, api_key_env = key_env,
                          temperature = temperature, log = dir .. "/llm.jsonl"}
  return client, coder
end

-- an external coder (--coder-cmd): speedrun.agent.extcoder; the chat client only when a model is
-- configured (for the LLM summaries), else a chat that answers no call
function M.compose_external(config, dir)
  local hide   -- nil: the default folders hidden; false (--coder-see-all): none
  if config.coder_see_all == true then hide = false end
  local coder, why = require("speedrun.agent.extcoder").new {cmd = config.coder_cmd,
    timeout = type(config.coder_timeout) == "number" and config.coder_timeout or nil, hide = hide}
  if not coder then return nil, why end
  if type(config.model) == "string" and type(config.base_url) == "string" then
    local client = M.compose({model = config.model, base_url = config.base_url, api_key_env = config.api_key_env,
                              temperature = config.temperature}, dir)
    if client then return client, coder end
  end
  return function() return nil, "no model: the run's coder is an external command (--coder-cmd)" end, coder
end

local function default_out(task)
  return fmt("runs/agent-task%d-%s", task, os.date("%Y%m%d-%H%M%S"))
end

local function check_run(o)
  for _, k in ipairs {"task", "model", "base-url"} do
    if not o[k] and (k == "task" or not o["coder-cmd"]) then
      return "run needs --" .. k .. (k == "task" and "" or " (or --coder-cmd)") .. "\n" .. USAGE.run
    end
  end
  if o.scaffold and not search.PRESETS[o.scaffold] then return select(2, search.policy(o.scaffold)) end
  if o.scale and not o.scale:match("^[%a_][%w_]*$") then return "--scale must be a scale name (micro, demo, proxy, full, auto)" end
  if o["train-files"] and not o["val-files"] then return "--train-files needs --val-files" end
  local nb = o["node-backend"]
  if nb and nb ~= "local" and nb ~= "slurm" then return "--node-backend must be local or slurm" end
end

function M.run(args)
  local o, pos = parse(args, RUN_OPTS)
  if not o then return die(pos .. "\n" .. USAGE.run) end
  if o.help then io.stdout:write(USAGE.run) return 0 end
  if #pos > 0 then return die("run takes no positional argument ('" .. pos[1] .. "')\n" .. USAGE.run) end
  local bad = check_run(o)
  if bad then return die(bad) end
  local config = M.config(o)
  local policy, perr = search.policy(config.scaffold)   -- before any work (greedy: git is there)
  if not policy then return die(perr, 1) end
  local dir = o.out or default_out(config.task)
  local chat, coder = M.compose(config, dir)
  if not chat then return die(coder, 1) end
  local reason = loop.start(dir, config, {chat = chat, coder = coder, quiet = o.quiet})
  print(report.finish(dir, reason))
  return 0
end

function M.resume(args)
  local o, pos = parse(args, RESUME_OPTS)
  if not o then return die(pos .. "\n" .. USAGE.resume) end
  if o.help then io.stdout:write(USAGE.resume) return 0 end
  local dir = pos[1]
  if not dir or pos[2] then return die("resume needs one run folder\n" .. USAGE.resume) end
  local config = json.decode(require("speedrun.util").read_file(dir .. "/config.json") or "null")
  if type(config) ~= "table" then return die(dir .. " holds no agent run (no config.json)", 1) end
  local chat, coder = M.compose(config, dir)
  if not chat then return die(coder, 1) end
  local reason = loop.resume(dir, {chat = chat, coder = coder, quiet = o.quiet}, {budgets = budgets_of(o)})
  print(report.finish(dir, reason))
  return 0
end

function M.report(args)
  local o, pos = parse(args, names {"help"})
  if not o then return die(pos .. "\n" .. USAGE.report) end
  if o.help then io.stdout:write(USAGE.report) return 0 end
  if not pos[1] or pos[2] then return die("report needs one run folder\n" .. USAGE.report) end
  local html, summary = report.write(pos[1])
  if not html then return die(summary, 1) end
  print("report: " .. html)
  print("summary: " .. summary)
  return 0
end

function M.main(args)
  local cmd = args[1]
  if not cmd then io.stderr:write(USAGE.main) return 2 end
  if cmd == "--help" or cmd == "-h" or cmd == "help" then io.stdout:write(USAGE.main) return 0 end
  local study = function(name) return function(a) return require("speedrun.agent.study_cli")[name](a) end end
  local fn = ({run = M.run, resume = M.resume, report = M.report, metrics = study("metrics"), judge = study("judge"),
               sweep = function(a) return require("speedrun.agent.sweep").main(a) end,
               chain = function(a) return require("speedrun.agent.chain").main(a) end})[cmd]
  if not fn then return die("unknown command '" .. cmd .. "'\n" .. USAGE.main) end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local ok, rc = pcall(fn, rest)
  if not ok then return die(tostring(rc), 1) end
  return rc
end

return M
