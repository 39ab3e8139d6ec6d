-- The fidelity harness's (tasks/fidelity) static checks for records 1-21, no GPU and no torch:
--   * every recipe's parameters (names, shapes, dtypes) at the full config map 1:1 onto its
--     benchmark script's, as tasks/fidelity/params.txt lists them (the vocabulary is built at 129
--     rows and read back as the record's 50257/50304, padded 256 as 50304: no 463M-row tables; set
--     SPEEDRUN_FIDELITY_FULL=1 to build the true full size); tied aliases are absent from the recipe;
--   * with python3 and the benchmark's scripts (SPEEDRUN_BENCH_SCRIPTS=DIR with record_N/
--     train_gpt2.py, else ../runs/scripts, else the llm-speedrunner mirror of
--     SPEEDRUN_BENCH_MIRROR): script_params.py reads params.txt back from the scripts, and
--     patches.py's patches apply to every script (accum 8 and 1), the patched sources compile and
--     the loader shapes are the expected ones; a changed script names the patch that failed;
--   * torch_side.py's compile caches go in xz parts a device call can bring back (a stand-in torch);
--   * compare.py's report (verdict, tokens/s and memory ratios, both sides' start-up, the summary);
--   * gpu_queues.sh (all.sh's FID_GPUS) spreads records over GPUs, one run a GPU at a time;
--   * the fidelity shell scripts and bench/gpu_session.sh pass `bash -n`.
local sr = require "speedrun"
local T = require "speedrun.testing"
local util = require "speedrun.util"

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/fidelity_names"
os.execute("mkdir -p " .. T.shell_quote(tmp))
local sh = T.shell_quote

-- params.txt -> {[n] = {params = {name = "shape dtype"}, ties = {alias = name}}}
local function expand(pattern)
  local pre, list, post = pattern:match("^(.-)%[([%d,%-]+)%](.*)$")
  if not pre then return {pattern} end
  local out = {}
  for part in list:gmatch("[^,]+") do
    local a, b = part:match("^(%d+)%-(%d+)$")
    a, b = tonumber(a or part), tonumber(b or part)
    for i = a, b do out[#out + 1] = pre .. i .. post end
  end
  return out
end

local function read_table(path)
  local recs, cur = {}, nil
  for line in io.lines(path) do
    local f = {}
    for w in line:gmatch("%S+") do f[#f + 1] = w end
    if #f == 0 or f[1]:sub(1, 1) == "#" then
    elseif f[1] == "record" then cur = {params = {}, ties = {}, count = 0}; recs[tonumber(f[2])] = cur
    elseif f[1] == "tied" then cur.ties[f[2]] = f[3]
    else
      for _, name in ipairs(expand(f[1])) do
        assert(not cur.params[name], "params.txt: " .. name .. " twice")
        cur.params[name] = f[2] .. " " .. f[3]
        cur.count = cur.count + 1
      end
    end
  end
  return recs
end

local TABLE = read_table("../tasks/fidelity/params.txt")
local FULL = os.getenv("SPEEDRUN_FIDELITY_FULL") == "1"
local SMALL_V, SMALL_PAD = 129, 256      -- vocab rows built, and their 128-padding

-- the recipe's parameters at the full config: {name = "shape dtype"}, in its order
local function recipe_params(n)
  local recipe = assert(util.load_recipe(("../tasks/record_%02d/recipe.lua"):format(n)))
  local model = util.deepcopy(recipe.config.full.model)
  local v0 = model.vocab_size
  if not FULL then model.vocab_size = SMALL_V end
  local ctx = assert(util.recipe_context(recipe, "full", "cpu", 1, {model = model}))
  local out, order = {}, {}
  for _, np in ipairs(ctx.model:named_parameters()) do
    local d = {}
    for i, s in ipairs(np[2].shape) do
      d[i] = FULL and s or (s == SMALL_V and v0) or (s == SMALL_PAD and 50304) or s
    end
    out[np[1]] = (#d > 0 and table.concat(d, "x") or "scalar") .. " " .. np[2].dtype
    order[#order + 1] = np[1]
  end
  return out, order
end

for n = 1, 21 do
  T.case(("record %d: the recipe's parameters are the script's (params.txt)"):format(n), function()
    local want = TABLE[n]
    T.ok(want, "params.txt has no record " .. n)
    local got, order = recipe_params(n)
    for _, name in ipairs(order) do
      T.ok(not want.ties[name], ("%s is a tied alias of %s in the script"):format(name, tostring(want.ties[name])))
      T.ok(want.params[name], ("recipe parameter %s (%s) is not in the script"):format(name, got[name]))
      T.eq(got[name], want.params[name], "shape and dtype of " .. name)
    end
    for name, v in pairs(want.params) do
      T.ok(got[name], ("script parameter %s (%s) is missing from the recipe"):format(name, v))
    end
    T.eq(#order, want.count, "parameter count")
  end)
end
collectgarbage()

-- python3 and the scripts -------------------------------------------------------------------
local run = T.run

local has_python = run("python3 -c 'import ast, re'")

local function scripts_dir()
  local dir = os.getenv("SPEEDRUN_BENCH_SCRIPTS")
  if dir then return dir end
  if run("test -f ../runs/scripts/record_21/train_gpt2.py") then return "../runs/scripts" end
  local mirror = os.getenv("SPEEDRUN_BENCH_MIRROR") or "/work/.mirror/facebookresearch+llm-speedrunner/repo"
  if not run("test -d " .. sh(mirror)) then return nil end
  for n = 1, 21 do
    local d = ("%s/scripts/record_%d"):format(tmp, n)
    os.execute("mkdir -p " .. sh(d))
    local ok = run(("git -C %s show HEAD:workspace_templates/nanogpt_speedrun/record_%d/train_gpt2.py > %s")
      :format(sh(mirror), n, sh(d .. "/train_gpt2.py")))
    if not ok then return nil end
  end
  return tmp .. "/scripts"
end

local SCRIPTS = has_python and scripts_dir()
if not has_python then print("note: no python3, the script-side checks are skipped")
elseif not SCRIPTS then print("note: no benchmark scripts (SPEEDRUN_BENCH_SCRIPTS), the script-side checks are skipped") end

if SCRIPTS then
  T.case("script_params.py reads params.txt back from the scripts", function()
    local ok, out = run(("python3 ../tasks/fidelity/script_params.py --table %s"):format(sh(SCRIPTS)))
    T.ok(ok, out)
    T.ok(out == T.read("../tasks/fidelity/params.txt"), "params.txt differs from the scripts: regenerate it with "
      .. "`python3 tasks/fidelity/script_params.py --table SCRIPTS > tasks/fidelity/params.txt`")
  end)

  T.case("patches.py applies to every script (accum 8 and 1), sources compile, shapes as expected", function()
    local ok, out = run(("python3 harness/fidelity_patches_check.py %s"):format(sh(SCRIPTS)))
    T.ok(ok, out)
    T.ok(out:match("21 scripts ok"), out)
  end)
end

if has_python then
  T.case("patches.py names the patch that did not apply", function()
    local ok, out = run("python3 harness/fidelity_patches_check.py --negative")
    T.ok(ok, out)
    T.ok(out:match("negative ok"), out)
  end)
end

if has_python then
  T.case("torch_side.py's compile caches: xz parts of <= 15 MiB, joined back, a cut set ignored, saved on a time limit before its timeout returns (waited.sh)", function()
    local dir = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/fidelity-cache"
    os.execute("rm -rf " .. sh(dir) .. " && mkdir -p " .. sh(dir))
    local ok, out = run("python3 harness/fidelity_cache_check.py " .. sh(dir))
    T.ok(ok and out:match("cache ok"), out)
  end)
end

if has_python then
  T.case("compare.py: verdict, tokens/s and memory ratios, the start-up of both sides, the summary line", function()
    local json = require "speedrun.json"
    local function side(path, t)
      T.write(path, json.encode(t))
      return sh(path)
    end
    local pt = side(tmp .. "/pt.json", {side = "pytorch", record = 9, accum = 1, micro_batch = 64, T = 1024,
                                         losses = {10.8, 9.5, 8.0}, tokens_per_s = 400000, peak_memory_bytes = 36e9,
                                         first_step_s = 61.25})
    local us = side(tmp .. "/us.json", {side = "speedrun", losses = {10.8, 9.51, 8.02}, tokens_per_s = 420000,
                                        peak_memory_bytes = 30e9, first_step_s = 1.5})
    local ok, out = run("python3 ../tasks/fidelity/compare.py " .. pt .. " " .. us)
    T.ok(ok, out)
    T.ok(out:find("tokens/s: pytorch 400000, speedrun 420000, ratio 1.050", 1, true), out)
    T.ok(out:find("ratio 0.83", 1, true), out)
    T.ok(out:find("start-up to the end of step 1: pytorch 61.2 s, speedrun 1.5 s", 1, true), out)
    T.ok(out:find("| MATCH | tokens/s ratio 1.050 | memory ratio 0.83 | start-up 61.2 / 1.5 s", 1, true), out)
    -- a side without the start-up (an older file): no start-up line, "-" in the summary; a drift: DIFFER, exit 1
    us = side(tmp .. "/us.json", {side = "speedrun", losses = {10.8, 9.6, 8.1}})
    ok, out = run("python3 ../tasks/fidelity/compare.py " .. pt .. " " .. us)
    T.ok(not ok and out:find("verdict: DIFFER", 1, true), out)
    T.ok(not out:find("start-up to", 1, true) and out:find("start-up 61.2 / - s", 1, true), out)
  end)
end

T.case("gpu_queues.sh: record k on GPU k % GPUS, a GPU's runs one after another, the GPUs at once, a failure reported", function()
  local dir = tmp .. "/queues"
  os.execute("rm -rf " .. sh(dir) .. " && mkdir -p " .. sh(dir))
  -- a run takes its GPU's lock (noclobber: a second run on the GPU at once fails to) and notes itself;
  -- GPU 0's first run waits for GPU 1's first to start: queues run one after another would time out
  local stub = ([[f(){ set -o noclobber; d=%s; { : > "$d/busy_$2"; } 2>/dev/null || echo "overlap $1" >> "$d/log";
    echo "run $1 gpu $2" >> "$d/log"; : > "$d/started_$1";
    if [ "$1" = 17 ]; then for i in $(seq 100); do [ -e "$d/started_18" ] && break; sleep 0.1; done
      [ -e "$d/started_18" ] || echo "sequential" >> "$d/log"; fi
    sleep 0.2; rm -f "$d/busy_$2"; [ "$1" != 19 ]; }; f]]):format(sh(dir))
  local ok, out = run("bash ../tasks/fidelity/gpu_queues.sh 2 " .. sh(stub) .. " 17 18 19 20 21")
  T.ok(not ok, "record 19's failure makes gpu_queues fail: " .. out)
  local log = T.read(dir .. "/log")
  T.ok(not log:find("overlap", 1, true) and not log:find("sequential", 1, true), log)
  for k, n in ipairs({17, 18, 19, 20, 21}) do
    local _, c = log:gsub("run " .. n .. " gpu " .. (k - 1) % 2 .. "\n", "")
    T.eq(c, 1, "record " .. n .. " ran once, on GPU " .. (k - 1) % 2 .. ": " .. log)
  end
  ok, out = run("bash ../tasks/fidelity/gpu_queues.sh auto true 17")
  T.ok(not ok and out:find("GPUS must be a positive integer", 1, true), out)
  -- all.sh refuses more GPUs than the machine has (a stand-in nvidia-smi listing one), before any run
  os.execute("mkdir -p " .. sh(dir .. "/bin"))
  T.write(dir .. "/bin/nvidia-smi", "#!/bin/sh\necho 'GPU 0: stand-in'\n")
  os.execute("chmod +x " .. sh(dir .. "/bin/nvidia-smi"))
  for _, v in ipairs {"3", "x", "0"} do
    ok, out = run("PATH=" .. sh(dir .. "/bin") .. ":$PATH OUT=" .. sh(dir .. "/out") .. " FID_GPUS=" .. v ..
                  " bash ../tasks/fidelity/all.sh /nonexistent /nonexistent 5 17 18")
    T.ok(not ok and out:find("FID_GPUS=" .. v .. ": a count from 1 to this machine's 1 GPU(s), or auto", 1, true), out)
  end
end)

T.case("the fidelity shell scripts parse (bash -n)", function()
  for _, f in ipairs({"../tasks/fidelity/run.sh", "../tasks/fidelity/all.sh", "../tasks/fidelity/noise.sh",
                      "../tasks/fidelity/gpu_queues.sh", "../bench/gpu_session.sh"}) do
    local ok, out = run("bash -n " .. sh(f))
    T.ok(ok, f .. ": " .. out)
  end
end)

T.done()
