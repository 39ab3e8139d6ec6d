-- speedrun.agent.study_cli: `speedrun agent metrics DIR...` and `speedrun agent judge DIR...`
-- (registered in speedrun.agent.cli; docs/agent.md "Reading a study"). A usage error exits 2, a
-- study that cannot be read exits 1.
local json = require "speedrun.json"
local journal = require "speedrun.agent.journal"
local H = require "speedrun.harness_core"

local M = {}
local fmt = string.format

M.USAGE = {}
M.USAGE.metrics = [[
usage: speedrun agent metrics DIR... [--out DIR] [--reps N] [--seed N] [--title TEXT] [--quiet]
The paper's metrics over the cells under DIR... (sweep folders, cell folders or agent runs): FSR
per run, the top-3 aggregation (mean +- SEM) per scaffold x hint x model, median / IQM / mean with
bootstrap CIs by hint regime, scaffold and model, node-type fractions, and the judge's and the
code similarity's means. Prints the tables; writes OUT/metrics.html (plots as inline SVG) and
OUT/*.csv (default OUT: the first DIR's metrics/).
  --reps N     bootstrap resamples (default 2000; the paper used 50000)
  --seed N     the bootstrap's seed (default 1)
  --quiet      no tables on stdout
]]
M.USAGE.judge = [[
usage: speedrun agent judge DIR... --model M --base-url URL [--api-key-env NAME] [--temperature T]
                                   [--max-tokens N] [--reasoning] [--retries N] [--force]
The benchmark's LLM judge over the cells under DIR...: for each cell, the start recipe, the
reference diff record i -> i+1 and the diff of the agent's fastest valid node go to the judge
model, whose JSON reproducibility_score (0..1) is written to CELL/judge.json (and joined to
`speedrun agent metrics`). Cells already judged by the same model are kept unless --force.
  --retries N  re-asks after a reply without usable JSON (default 1)
Exit status 1 when any cell ended in an error (each is listed), else 0.
]]

local function die(msg, code)
  io.stderr:write("speedrun agent: ", msg, "\n")
  return code or 2
end

-- the options beyond `speedrun agent`'s own (speedrun.agent.cli's SPEC: out, seed, model, ...)
local SPEC = {reps = "int", title = "str", reasoning = "flag", retries = "int0", force = "flag"}
local ALLOWED = {
  metrics = {out = true, reps = true, seed = true, title = true, quiet = true, help = true},
  judge = {model = true, ["base-url"] = true, ["api-key-env"] = true, temperature = true, ["max-tokens"] = true,
           reasoning = true, retries = true, force = true, help = true, quiet = true},
}

local function parse(args, cmd) return require("speedrun.agent.cli").parse(args, ALLOWED[cmd], SPEC) end

local function mkdir_p(path)
  local acc = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    acc = acc .. "/" .. part
    H.mkdir(acc)
  end
end

function M.metrics(args)
  local o, pos = parse(args, "metrics")
  if not o then return die(pos .. "\n" .. M.USAGE.metrics) end
  if o.help then io.stdout:write(M.USAGE.metrics) return 0 end
  if #pos == 0 then return die("metrics needs at least one folder\n" .. M.USAGE.metrics) end
  local metrics = require "speedrun.agent.metrics"
  local out_mod = require "speedrun.agent.metrics_out"
  local html = require "speedrun.agent.metrics_html"
  local ok, study = pcall(metrics.load, pos)
  if not ok then return die(tostring(study), 1) end
  if #study.cells == 0 then return die("no cell with a task under " .. table.concat(pos, " "), 1) end
  local R = metrics.compute(study, {reps = tonumber(o.reps), seed = tonumber(o.seed)})
  local out = o.out or ((pos[1]:gsub("/+$", "")) .. "/metrics")
  mkdir_p(out)
  for name, text in pairs(out_mod.csv_files(R)) do
    local wok, err = journal.write_atomic(out .. "/" .. name, text)
    if not wok then return die("cannot write " .. out .. "/" .. name .. ": " .. tostring(err), 1) end
  end
  journal.write_atomic(out .. "/metrics.html", html.page(R, o.title))
  journal.write_json(out .. "/metrics.json", {schema = "speedrun.agent.metrics/1", opts = R.opts, configs = #R.configs,
                                             runs = #R.runs, warnings = json.array(R.warnings)})
  if not o.quiet then io.stdout:write(out_mod.text(R)) end
  print(fmt("metrics: %s/metrics.html and %s/*.csv (%d runs)", out, out, #R.runs))
  return 0
end

-- the judge's chat client from the options (speedrun.agent.llm), logging to each cell's folder
local function client_maker(o)
  local llm = require "speedrun.agent.llm"
  local key_env = o["api-key-env"]
  if not key_env and os.getenv("OPENAI_API_KEY") then key_env = "OPENAI_API_KEY" end
  return function(cell)
    return llm.new {base_url = o["base-url"], model = o.model, api_key_env = key_env,
                    temperature = tonumber(o.temperature), max_tokens = tonumber(o["max-tokens"]),
                    reasoning = o.reasoning or false, log = cell.dir .. "/judge.llm.jsonl"}
  end
end

function M.judge(args)
  local o, pos = parse(args, "judge")
  if not o then return die(pos .. "\n" .. M.USAGE.judge) end
  if o.help then io.stdout:write(M.USAGE.judge) return 0 end
  if #pos == 0 then return die("judge needs at least one folder\n" .. M.USAGE.judge) end
  for _, k in ipairs {"model", "base-url"} do
    if not o[k] then return die("judge needs --" .. k .. "\n" .. M.USAGE.judge) end
  end
  local judge = require "speedrun.agent.judge"
  local ok, results = pcall(judge.run, pos, {make_chat = client_maker(o), model = o.model,
                                             retries = tonumber(o.retries) or 1, force = o.force})
  if not ok then return die(tostring(results), 1) end
  local errors = 0
  for _, R in ipairs(results) do
    local score = type(R.reproducibility_score) == "number" and fmt("%.3f", R.reproducibility_score) or "-"
    local note = R.kept and "(kept)" or (type(R.error) == "string" and R.error or "")
    print(fmt("%-8s %-6s %s %s", tostring(R.status), score, R.dir, note))
    if R.status == "error" then errors = errors + 1 end
  end
  print(fmt("judge: %d cells, %d errors", #results, errors))
  return errors > 0 and 1 or 0
end

return M
