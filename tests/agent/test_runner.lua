-- The job runner (lua/speedrun/agent/runner.lua): the local backend runs jobs concurrently, one
-- per slot (CUDA_VISIBLE_DEVICES set per GPU slot; N slots on the CPU), reports exit states and
-- liveness; the Slurm backend submits one sbatch array and polls sacct, run here against the shim
-- sbatch/sacct/squeue/scancel of tests/agent/slurm/ placed first on the PATH. docs/agent.md.
local T = require "speedrun.testing"
local H = require "speedrun.harness_core"
local process = require "speedrun.process"
local runner = require "speedrun.agent.runner"

local tmp = (os.getenv("SPEEDRUN_TEST_TMP") or "/tmp") .. "/agent_runner"
local sh = T.shell_quote
if not os.getenv("SLURM_SHIM_DIR") then os.execute("rm -rf " .. sh(tmp) .. " && mkdir -p " .. sh(tmp)) end
local read = T.read

local function cwd()
  local p = io.popen("pwd")
  local s = p:read("l")
  p:close()
  return s
end
local SHIMS = cwd() .. "/agent/slurm"

local CHILD = os.getenv("SLURM_SHIM_DIR") ~= nil

if not CHILD then
  T.case("local backend, CPU: two slots run two jobs at once; exit codes and logs", function()
    local R = assert(runner.new {backend = "local", gpus = {}, slots = 2, poll = 0.05})
    T.eq(#R.slots, 2)
    local jobs = {}
    for i = 1, 4 do
      jobs[i] = {name = "j" .. i, cwd = tmp, log = tmp .. "/j" .. i .. ".log",
                 cmd = ("echo start %d >> order.txt; sleep 0.3; echo job %d; echo end %d >> order.txt; exit %d"):format(i, i, i, i == 3 and 3 or 0)}
    end
    local starts, dones = {}, {}
    local t0 = H.now()
    local res = R:run(jobs, {on_start = function(j, h) starts[#starts + 1] = j.name .. "@" .. h end,
                             on_done = function(j, r) dones[#dones + 1] = j.name end})
    local dt = H.now() - t0
    -- (the order below is the proof of concurrency; the time only a sanity bound on a shared machine)
    T.ok(dt < 5, ("4 jobs of 0.3 s on 2 slots took %.2f s"):format(dt))
    T.eq(#starts, 4)
    T.ok(starts[1]:match("^j1@local:%d+$"), starts[1])
    T.eq(#dones, 4)
    T.eq(res.j1.state, "COMPLETED")
    T.eq(res.j3.state, "FAILED")
    T.eq(res.j3.rc, 3)
    T.eq(read(tmp .. "/j2.log"), "job 2\n")
    local order = read(tmp .. "/order.txt")
    T.ok(order:find("^start [12]\nstart [12]\n"), "the first two jobs ran together:\n" .. order)
  end)

  T.case("local backend, GPUs: one job per GPU, CUDA_VISIBLE_DEVICES per job", function()
    local R = assert(runner.new {backend = "local", gpus = {"0", "1", "2"}, poll = 0.05})
    T.eq(#R.slots, 3)
    local jobs = {}
    for i = 1, 3 do
      jobs[i] = {name = "g" .. i, log = tmp .. "/g" .. i .. ".log", cmd = "sleep 0.2; echo \"gpu=$CUDA_VISIBLE_DEVICES\""}
    end
    T.eq(#assert(runner.new {backend = "local", gpus = {"0", "1", "2"}, max_gpus = 2}).slots, 2, "max_gpus")
    R:run(jobs)
    local seen = {}
    for i = 1, 3 do seen[#seen + 1] = read(tmp .. "/g" .. i .. ".log") end
    table.sort(seen)
    T.eq(table.concat(seen), "gpu=0\ngpu=1\ngpu=2\n")
  end)

  T.case("local backend: liveness of a handle; an interrupt stops the running jobs", function()
    local p = process.spawn {argv = {"/bin/sh", "-c", "sleep 5"}}
    T.eq(runner.alive("local:" .. p:pid()), true)
    p:kill(9)
    while not p:wait() do process.sleep(0.02) end
    T.eq(runner.alive("local:" .. p:pid()), false)
    T.eq(runner.alive("nonsense"), false)
    local R = assert(runner.new {backend = "local", gpus = {}, slots = 1, poll = 0.05})
    local t0 = H.now()
    local res = R:run({{name = "long", cmd = "sleep 5"}, {name = "never", cmd = "true"}},
                      {interrupted = function() return H.now() - t0 > 0.2 end})
    T.ok(H.now() - t0 < 3, "stopped early")
    T.eq(res.long.state, "CANCELLED")
    T.eq(res.never, nil, "a queued job is not started after an interrupt")
  end)
end

-- the Slurm cases run in a child of this test whose PATH starts with the shims (the runner's
-- commands go through /bin/sh, which finds them there)
if not os.getenv("SLURM_SHIM_DIR") then
  local D = tmp .. "/slurm"
  os.execute("mkdir -p " .. sh(D))
  local cmd = ("PATH=%s SLURM_SHIM_DIR=%s %s run %s 2>&1"):format(sh(SHIMS .. ":" .. os.getenv("PATH")), sh(D),
                                                                  sh(arg[-1]), sh(arg[0]))
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  io.stdout:write(out)
  T.case("the Slurm cases pass (child with the shims on the PATH)", function() T.ok(ok, out) end)
  T.done()
  return
end

local D = os.getenv("SLURM_SHIM_DIR")

T.case("slurm: the shims are the ones found", function()
  local p = io.popen("command -v sbatch")
  T.eq(p:read("l"), SHIMS .. "/sbatch")
  p:close()
end)

T.case("slurm backend: one array of 3 tasks; states and exit codes from sacct; logs", function()
  local R = assert(runner.new {backend = "slurm", dir = tmp .. "/jobs", poll = 0.1,
                               sbatch_args = {"--gres=gpu:1", "--time=60"}, max_parallel = 2})
  local jobs = {}
  for i = 1, 3 do
    jobs[i] = {name = "s" .. i, cwd = tmp, log = tmp .. "/s" .. i .. ".log",
               cmd = ("echo task %d in $SLURM_ARRAY_TASK_ID; exit %d"):format(i, i == 2 and 4 or 0)}
  end
  local handles, dones = {}, {}
  local res = R:run(jobs, {on_start = function(j, h) handles[j.name] = h end,
                           on_done = function(j, r) dones[#dones + 1] = j.name end})
  T.eq(res.s1.state, "COMPLETED")
  T.eq(res.s2.state, "FAILED")
  T.eq(res.s2.rc, 4)
  T.eq(res.s3.state, "COMPLETED")
  T.eq(#dones, 3)
  T.eq(read(tmp .. "/s3.log"), "task 3 in 2\n")
  local id = handles.s1:match("^slurm:(%d+)_0$")
  T.ok(id, handles.s1)
  T.eq(handles.s3, "slurm:" .. id .. "_2")
  local calls = read(D .. "/calls.log")
  local _, n = calls:gsub("sbatch ", "")
  T.eq(n, 1, "one submission:\n" .. calls)
  T.ok(calls:find("sbatch --parsable --gres=gpu:1 --time=60 ", 1, true), calls)
  local script = read(tmp .. "/jobs/array-0.sh")
  T.ok(script:find("#SBATCH --array=0-2%2", 1, true), script)
  T.ok(calls:find("sacct -j " .. id, 1, true), "polled with sacct")
end)

T.case("slurm backend: squeue liveness; an interrupt cancels the array with scancel", function()
  local R = assert(runner.new {backend = "slurm", dir = tmp .. "/jobs", poll = 0.1})
  local t0 = H.now()
  local h, alive_then
  local res = R:run({{name = "long", cmd = "sleep 5"}},
                    {on_start = function(_, handle) h = handle end,
                     interrupted = function()
                       if H.now() - t0 > 0.4 and alive_then == nil then alive_then = runner.alive(h) end
                       return H.now() - t0 > 0.4
                     end})
  T.ok(H.now() - t0 < 3, "stopped early")
  T.eq(alive_then, true, "alive while running")
  T.eq(res.long.state, "CANCELLED")
  T.eq(runner.alive(h), false)
  T.ok(read(D .. "/calls.log"):find("scancel " .. h:match("slurm:(%d+)"), 1, true), "scancel called")
  T.ok(read(tmp .. "/jobs/array-1.sh"), "a second script, not the first overwritten")
end)

T.case("slurm backend without accounting: tasks that left squeue end as UNKNOWN", function()
  T.write(D .. "/no_accounting", "")
  local R = assert(runner.new {backend = "slurm", dir = tmp .. "/jobs", poll = 0.1})
  local res = R:run({{name = "a", cmd = "sleep 0.2"}, {name = "b", cmd = "true"}})
  os.remove(D .. "/no_accounting")
  T.eq(res.a.state, "UNKNOWN")
  T.eq(res.b.state, "UNKNOWN")
end)

T.case("local liveness with a marker: a live pid whose command line lacks it is not the job", function()
  local p = process.spawn {argv = {"/bin/sh", "-c", "sleep 3 # cell-xyz"}}
  -- until the child has exec'd, /proc shows the parent's command line
  local t0 = H.now()
  while not runner.alive("local:" .. p:pid(), "cell-xyz") and H.now() - t0 < 2 do process.sleep(0.02) end
  T.eq(runner.alive("local:" .. p:pid(), "cell-xyz"), true)
  T.eq(runner.alive("local:" .. p:pid(), "cell-other"), false)
  p:kill(9)
  while not p:wait() do process.sleep(0.02) end
end)

T.case("a job no handle names is found by its folder in its command line (a sweep killed before recording it)", function()
  local dir = "/tmp/speedrun-runner-test/cells/t01-s1"
  local p = process.spawn {argv = {"/bin/sh", "-c", "sleep 3 # >> '" .. dir .. "/agent.log'"}}
  local t0 = H.now()
  while not runner.running_with(dir) and H.now() - t0 < 2 do process.sleep(0.02) end
  T.eq(runner.running_with(dir), p:pid())
  T.eq(runner.running_with("/tmp/speedrun-runner-test/cells/t01-s"), nil, "a folder whose name is a prefix of it is another")
  T.eq(runner.running_with("/tmp/speedrun-runner-test/cells/t01-s2"), nil)
  p:kill(9)
  while not p:wait() do process.sleep(0.02) end
  T.eq(runner.running_with(dir), nil, "gone once it exits")
  local q = process.spawn {argv = {"/bin/sh", "-c", "sleep 3", "--out", dir}}   -- as a separate argument
  t0 = H.now()
  while not runner.running_with(dir) and H.now() - t0 < 2 do process.sleep(0.02) end
  T.eq(runner.running_with(dir), q:pid())
  q:kill(9)
  while not q:wait() do process.sleep(0.02) end
end)

T.case("slurm backend: a failed submission is an error; an unknown backend is refused", function()
  local R = assert(runner.new {backend = "slurm", dir = tmp .. "/jobs", poll = 0.1})
  T.write(D .. "/fail_next", "")
  T.raises(function() R:run({{name = "x", cmd = "true"}}) end, "sbatch failed")
  local none, err = runner.new {backend = "nope"}
  T.eq(none, nil)
  T.ok(err:find("unknown backend", 1, true), err)
  T.eq(select(2, runner.new {backend = "slurm"}), "the slurm backend needs a folder for its job scripts")
end)

T.done()
